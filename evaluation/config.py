"""The ``[evaluate]`` section of a run config: which downstream tasks, methods and protocol.

No torch here: the config is validated by the CLI before anything heavy is imported.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TASKS: tuple[str, ...] = ("depth", "flow", "pose")
METHODS: tuple[str, ...] = ("croco_v1", "croco_v2", "mae", "none")
PROTOCOLS: tuple[str, ...] = ("probe", "finetune")

Task = Literal["depth", "flow", "pose"]
Method = Literal["croco_v1", "croco_v2", "mae", "none"]


def _check_names(values: object, allowed: tuple[str, ...], what: str) -> object:
    """Raise one readable error for unknown names instead of pydantic's per-item literal errors."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return values  # let pydantic report the type error
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what}s listed twice: {list(values)}")
    if not values:
        raise ValueError(f"at least one {what} is needed; allowed: {', '.join(allowed)}")
    return list(values)


class EvaluateConfig(BaseModel):
    """Downstream evaluation of pretrained backbones on the corpus's held-out (val) scenes.

    The val split's scenes are divided again by scene into a head-training part and a test part
    (``test_fraction`` of the scenes; by pair when the split holds a single scene).
    ``none`` is the random-initialisation baseline (same architecture, no pretraining).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[Task] = Field(default_factory=lambda: list(TASKS))
    methods: list[Method] = Field(default_factory=lambda: list(METHODS))
    protocol: Literal["probe", "finetune"] = "probe"
    steps: int = Field(200, gt=0, description="optimiser steps of the head (and backbone when fine-tuning)")
    batch_size: int = Field(8, gt=0)
    lr: float = Field(1e-3, gt=0, description="head learning rate")
    backbone_lr: float = Field(1e-4, gt=0, description="backbone learning rate (finetune protocol)")
    weight_decay: float = Field(0.01, ge=0)
    crop_size: int | None = Field(
        None, gt=0, description="square input size; None = the pretraining preset's image size"
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    test_fraction: float = Field(0.5, gt=0, lt=1)
    max_pairs: int | None = Field(None, gt=0, description="cap on val pairs read (None = all)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: object) -> object:
        return _check_names(value, TASKS, "task")

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: object) -> object:
        return _check_names(value, METHODS, "method")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: object) -> object:
        if isinstance(value, str) and value not in PROTOCOLS:
            raise ValueError(f"unknown protocol {value!r}; allowed: {', '.join(PROTOCOLS)}")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("seeds: at least one seed is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"seeds listed twice: {value}")
        if any(s < 0 for s in value):
            raise ValueError(f"seeds must be >= 0, got {value}")
        return value

    def fingerprint(self, spec: dict) -> str:
        """Hash of everything that changes a single (method, task, seed) result: a result file
        written under another fingerprint is stale for this config."""
        import hashlib
        import json

        keep = self.model_dump(mode="json", exclude={"tasks", "methods", "seeds", "device", "threads"})
        blob = json.dumps({"evaluate": keep, "spec": spec}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

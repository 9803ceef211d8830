"""Pretraining configuration: the `[pretrain]` section of a run TOML.

Validated data only; this module must not import torch so that the run config (and the CLI's
`--help`) loads on machines without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from training.methods import METHODS, PRETRAINED_METHODS, get_method

Preset = Literal["test", "tiny", "small", "base", "base_basedec", "large"]
Device = Literal["auto", "cpu", "cuda"]

# The papers' warmup as a share of the schedule (training.methods: CroCo v1 40 of 800 epochs,
# CroCo v2 12 of 250, MAE 40 of 800). Used when warmup_epochs is not set.
PAPER_WARMUP_SHARE = {m.name: m.paper_warmup_share for m in METHODS.values() if m.paper_warmup_share is not None}

# Crop size each preset was designed for (patch 8 at 112 px and patch 16 at 224 px both give the
# paper's 14x14 token grid).
PRESET_CROP = {"test": 32, "tiny": 112, "small": 224, "base": 224, "base_basedec": 224, "large": 224}


class CorpusSource(BaseModel):
    """One corpus of a training mixture: its folder and its share of the samples (weight / sum)."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="corpus folder (holds manifest.parquet); relative to the config file")
    weight: float = Field(1.0, gt=0.0, allow_inf_nan=False)
    name: str | None = Field(None, description="label in the logs (default: the folder's parent's name)")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        path = Path(self.path)
        return path.parent.name if path.name == "corpus" and path.parent.name else path.name


class PretrainConfig(BaseModel):
    """Recipe for pretraining one or more methods on a run's corpus.

    Defaults follow the CroCo papers: AdamW(0.9, 0.95), wd 0.05, lr = base_lr x batch/256,
    linear warmup for the paper's share of the schedule (PAPER_WARMUP_SHARE, per method) then a
    half-cosine that is stopped halfway (stop_fraction 0.5).
    """

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(default_factory=lambda: list(PRETRAINED_METHODS), min_length=1)
    preset: Preset = "tiny"
    crop_size: int | None = Field(default=None, ge=8, description="square crop; None = the preset's")
    mask_ratio_croco: float = Field(default=0.9, gt=0.0, lt=1.0)
    mask_ratio_mae: float = Field(default=0.75, gt=0.0, lt=1.0)
    batch_size: int = Field(default=16, ge=1, description="pairs per process per micro-step")
    accumulation: int = Field(default=1, ge=1, description="micro-steps per optimiser step")
    base_lr: float = Field(default=1.5e-4, gt=0.0)
    weight_decay: float = Field(default=0.05, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.95)
    epochs: int = Field(default=100, ge=1, description="length of the full half-cosine schedule")
    steps_per_epoch: int = Field(default=100, ge=1, description="optimiser steps per epoch (resampled shards)")
    warmup_epochs: float | None = Field(
        default=None, ge=0.0, description="None = the paper's share of `epochs` for each method"
    )
    stop_fraction: float = Field(
        default=0.5, gt=0.0, le=1.0, description="train for this fraction of the schedule (paper: 0.5)"
    )
    min_lr: float = Field(default=0.0, ge=0.0)
    checkpoint_every: int = Field(default=100, ge=1, description="optimiser steps between checkpoints")
    keep_checkpoints: int = Field(default=3, ge=1, description="newest checkpoints kept on disk")
    log_every: int = Field(default=10, ge=1)
    figure_every: int = Field(default=500, ge=1, description="steps between reconstruction figures")
    cross_view_every: int = Field(
        default=100, ge=0, description="steps between cross-view-gain measurements on held-out pairs (0 = off; a multiple of log_every)"
    )
    cross_view_pairs: int = Field(default=16, ge=2, description="held-out (val) pairs the cross-view gain uses")
    swap_views: bool = False
    jitter_min: float = Field(default=0.6, gt=0.0)
    jitter_max: float = Field(default=1.4, gt=0.0)
    num_workers: int = Field(default=2, ge=0)
    shuffle_buffer: int = Field(default=256, ge=0)
    compile: bool = False
    tensorboard: bool = True
    naive_attention: bool = False
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="bf16 autocast; auto = bf16 on CUDA, fp32 on CPU"
    )
    seed: int = 0
    nproc: int = Field(default=1, ge=1, description="processes per node (torchrun --nproc-per-node)")
    device: Device = "auto"
    split: str = "train"
    corpora: list[CorpusSource] = Field(
        default_factory=list,
        description="weighted mixture of corpora (empty: the run's own corpus); every rank draws each "
        "sample's corpus with probability weight / sum of weights",
    )

    @field_validator("methods", mode="before")
    @classmethod
    def _known_methods(cls, value: object) -> object:
        if isinstance(value, (list, tuple)) and value:  # an empty list is refused by min_length
            unknown = [v for v in value if v not in PRETRAINED_METHODS]
            if unknown:
                raise ValueError(f"unknown method {unknown}; allowed: {', '.join(PRETRAINED_METHODS)} "
                                 "(the 'none' baseline needs no pretraining)")
        return value

    @model_validator(mode="after")
    def _check(self) -> "PretrainConfig":
        if self.jitter_min > self.jitter_max:
            raise ValueError(f"jitter_min {self.jitter_min} > jitter_max {self.jitter_max}")
        if self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} exceeds epochs {self.epochs}")
        if self.cross_view_every % self.log_every:
            raise ValueError(f"cross_view_every {self.cross_view_every} must be a multiple of log_every "
                             f"{self.log_every} (the gain is written with that step's metrics), or 0 (off)")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {self.methods}")
        labels = [c.label for c in self.corpora]
        if len(set(labels)) != len(labels):
            raise ValueError(f"corpora: two sources share a label {labels}; give them distinct names")
        return self

    @property
    def crop(self) -> int:
        return self.crop_size if self.crop_size is not None else PRESET_CROP[self.preset]

    def mask_ratio(self, method: str) -> float:
        setting = get_method(method).mask_ratio_setting
        if setting is None:
            raise ValueError(f"method {method!r} is not pretrained and has no mask ratio")
        return getattr(self, setting)

    @property
    def total_steps(self) -> int:
        """Optimiser steps actually run: the schedule's length times the stop fraction."""
        return max(1, int(round(self.epochs * self.steps_per_epoch * self.stop_fraction)))

    @property
    def schedule_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def warmup_steps(self, method: str | None = None) -> int:
        """Warmup optimiser steps: warmup_epochs when set, else the paper's share for `method`."""
        if self.warmup_epochs is not None:
            return int(round(self.warmup_epochs * self.steps_per_epoch))
        if method not in PAPER_WARMUP_SHARE:
            raise ValueError(f"warmup_epochs is unset and method {method!r} has no paper warmup; "
                             f"set warmup_epochs or use one of {sorted(PAPER_WARMUP_SHARE)}")
        return int(round(PAPER_WARMUP_SHARE[method] * self.schedule_steps))

"""The ``[evaluate]`` section of a run config: which downstream tasks, methods and protocol.

No torch here: the config is validated by the CLI before anything heavy is imported.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from evaluation.tasks import CORPUS, CORPUS_TASKS, EXTERNAL_DATASETS, EXTERNAL_TASKS, HEAD_TASKS, TASK_NAMES, get_task
from evaluation.tasks import TASKS as TASK_TABLE
from training.methods import ALL_METHODS, check_names

# Views of the registries (evaluation.tasks, training.methods), where tasks and methods are declared.
TASKS: tuple[str, ...] = TASK_NAMES
TASK_KIND: dict[str, str] = {name: t.kind for name, t in TASK_TABLE.items()}  # what each task predicts
# The config section ([evaluate.<name>]) an external-dataset task reads its data from.
TASK_SOURCE: dict[str, str] = {name: t.source for name, t in TASK_TABLE.items() if t.source != CORPUS}
METHODS: tuple[str, ...] = ALL_METHODS
# [evaluate] keys only the training-free measures read (not part of a head task's fingerprint).
MEASURE_KEYS: frozenset[str] = frozenset(k for t in TASK_TABLE.values() for k in t.measure_settings + t.measure_options)
from training.config import CorpusSource
PROTOCOLS: tuple[str, ...] = ("probe", "finetune")


class EvaluateSettings(BaseModel):
    """Downstream evaluation of pretrained backbones on the corpus's held-out (val) scenes.

    The val split's scenes are divided again by scene into a head-training part and a test part
    (``test_fraction`` of the scenes; by pair when the split holds a single scene).
    ``none`` is the random-initialisation baseline (same architecture, no pretraining).
    The external-dataset tasks (``nyuv2``, ``sintel_clean``, ``sintel_final``) read the real
    datasets named in the ``[evaluate.nyuv2]`` / ``[evaluate.sintel]`` sections instead: one
    optional section per registered dataset (evaluation.tasks.EXTERNAL_DATASETS), added as a
    field by :data:`EvaluateConfig`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[str] = Field(default_factory=lambda: list(HEAD_TASKS))
    methods: list[str] = Field(default_factory=lambda: list(METHODS))
    protocol: Literal["probe", "finetune"] = "probe"
    protocol_overrides: dict[str, Literal["probe", "finetune"]] = Field(
        default_factory=dict,
        description="per-task protocol, e.g. {flow = 'finetune'}: frozen RoPE (CroCo v2) features carry no "
        "absolute position, so displacement is not directly readable by a flow probe",
    )
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
    matching: Literal["one_way", "mutual"] = Field(
        "one_way", description="correspondence: nearest neighbour view 1 -> view 2, or mutual nearest neighbours"
    )
    position_centred: bool = Field(
        False, description="correspondence: subtract each grid position's mean feature over the set before matching "
        "(removes the position prior of absolute-position features)"
    )
    max_pairs: int | None = Field(None, gt=0, description="cap on val pairs read (None = all)")
    corpora: list[CorpusSource] = Field(
        default_factory=list,
        description="val pairs of the corpus tasks from several corpora, in proportion to their weights "
        "(empty: the run's corpus); exact per-corpus counts are recorded in every result",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads per job process (None: cores / workers, at least 1)"
    )
    workers: int | None = Field(
        None, ge=1, le=64,
        description="(method, task, seed) jobs run side by side, each in its own process "
        "(None: one per core, at most 4; one on a CUDA device)",
    )
    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: object) -> object:
        return check_names(value, TASKS, "task")

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: object) -> object:
        return check_names(value, METHODS, "method")

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

    @field_validator("protocol_overrides", mode="before")
    @classmethod
    def _overrides(cls, value: object) -> object:
        if isinstance(value, dict) and value:
            check_names(list(value), TASKS, "task")
            for task, protocol in value.items():
                if protocol not in PROTOCOLS:
                    raise ValueError(f"unknown protocol {protocol!r} for task {task!r}; allowed: {', '.join(PROTOCOLS)}")
        return value

    def protocol_for(self, task: str) -> str:
        return self.protocol_overrides.get(task, self.protocol)

    @model_validator(mode="after")
    def _distinct_corpora(self) -> "EvaluateSettings":
        labels = [c.label for c in self.corpora]
        if len(set(labels)) != len(labels):
            raise ValueError(f"corpora: two sources share a label {labels}; give them distinct names")
        return self

    @model_validator(mode="after")
    def _sources_for_tasks(self) -> "EvaluateSettings":
        for task in self.tasks:
            source = get_task(task).source
            if source != CORPUS and getattr(self, source, None) is None:
                needs = EXTERNAL_DATASETS[source].needs
                raise ValueError(f"task {task!r} needs an [evaluate.{source}] section with {needs}")
        return self

    def external_section(self, task: str):
        """The [evaluate.<dataset>] section an external-dataset task reads."""
        return getattr(self, get_task(task).source)

    def job_processes(self, jobs: int, cores: int, cuda: bool) -> tuple[int, int]:
        """(processes, torch threads per process) for ``jobs`` jobs on ``cores`` CPU cores.

        One single-threaded process per core by default: the small CPU jobs parallelise better
        across processes than across torch threads, and a thread count above the cores left free
        by other work makes OpenMP spin (2 threads on 2 busy cores ran ~5x slower than 1).
        """
        workers = self.workers or (1 if cuda else min(4, cores))
        workers = max(1, min(workers, jobs))
        return workers, self.threads or max(1, cores // workers)

    def fingerprint(self, spec: dict, task: str) -> str:
        """Hash of everything that changes a single (method, task, seed) result: a result file
        written under another fingerprint is stale for this config. Only the data source the
        task reads counts, so adding an external dataset's section leaves the other results valid."""
        import hashlib
        import json

        entry = get_task(task)
        if entry.zero_shot:  # no head: only what selects and shapes the pairs counts
            keep = self.model_dump(mode="json", include={"max_pairs", "crop_size"})
            if self.corpora:  # only when set, so results made before the key existed stay valid
                keep["corpora"] = self.model_dump(mode="json", include={"corpora"})["corpora"]
            for key in entry.measure_settings:
                keep[key] = getattr(self, key)
            for key in entry.measure_options:  # only when set, so results made before the option stay valid
                if getattr(self, key):
                    keep[key] = getattr(self, key)
            blob = json.dumps({"evaluate": keep, "spec": spec, "task": task}, sort_keys=True)
            return hashlib.sha256(blob.encode()).hexdigest()[:16]
        unused = set(EXTERNAL_DATASETS) - {entry.source}
        keep = self.model_dump(
            mode="json",
            exclude={"tasks", "methods", "seeds", "device", "threads", "workers", "protocol_overrides",
                     *MEASURE_KEYS, *unused},
        )
        keep["protocol"] = self.protocol_for(task)
        if entry.source != CORPUS:
            for key in EXTERNAL_DATASETS[entry.source].fingerprint_drops:  # corpus settings
                keep.pop(key)
        if entry.source != CORPUS or not self.corpora:
            keep.pop("corpora", None)  # a corpus setting; results made before mixtures keep their fingerprint
        blob = json.dumps({"evaluate": keep, "spec": spec}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# The [evaluate] section: the settings above plus one optional section per external dataset,
# so that a dataset registered in evaluation.tasks needs no line here.
EvaluateConfig = create_model(
    "EvaluateConfig",
    __base__=EvaluateSettings,
    __module__=__name__,
    __qualname__="EvaluateConfig",
    __doc__=EvaluateSettings.__doc__,
    **{name: (Optional[dataset.section], Field(None, description=f"the [evaluate.{name}] section"))
       for name, dataset in EXTERNAL_DATASETS.items()},
)


def _measure_keys_are_settings() -> None:
    unknown = sorted(MEASURE_KEYS - set(EvaluateConfig.model_fields))
    if unknown:
        raise RuntimeError(f"evaluation.tasks names measure settings {unknown} that [evaluate] does not have")


_measure_keys_are_settings()

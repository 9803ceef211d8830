"""A run config resolved once: the validated config, its folder layout and its evaluation.

Commands resolve the TOML once at their start and hand the result to the stage checks and the
flows, so no stage re-reads or re-validates the file and every stage sees the same values. Flows
that a Prefect deployment starts take the config path and resolve it once at their entry. Facts
that need the run's files and cost work to find (the evaluation plan, pipeline.stages) are worked
out once per resolved run and kept on it, for every later stage check and the live display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evaluation.config import EvaluateConfig
from pipeline.config import RunConfig, load_run_config
from rendering.layout import RunLayout


@dataclass(frozen=True)
class Evaluation:
    """The evaluation settings (CLI overrides applied) and the backbone size every method uses."""

    config: EvaluateConfig
    spec: dict  # training.models.ModelSpec as a dict


@dataclass(frozen=True)
class ResolvedRun:
    config: RunConfig
    layout: RunLayout
    evaluation: Evaluation | None  # None when the command does not evaluate
    # Worked out once from the run's files (pipeline.stages.evaluation_jobs); not part of the identity.
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.layout.root

    @property
    def source(self) -> Path | None:
        return self.config.source


def resolve_evaluation(run: RunConfig, methods: list[str] | None = None, tasks: list[str] | None = None) -> Evaluation:
    """The run's evaluation with CLI overrides validated; raises ValueError with a user-facing message."""
    from pydantic import ValidationError

    from training.models import preset_spec

    base = run.evaluate if run.evaluate is not None else EvaluateConfig()
    update = {}
    if methods:
        update["methods"] = methods
    if tasks:
        update["tasks"] = tasks
    try:
        cfg = EvaluateConfig.model_validate({**base.model_dump(), **update})
    except ValidationError as err:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())) from None
    if run.pretrain is None:
        raise ValueError("evaluation needs the [pretrain] section (model preset and crop size of the backbones)")
    size = cfg.crop_size if cfg.crop_size is not None else run.pretrain.crop
    return Evaluation(cfg, preset_spec(run.pretrain.preset, size).to_dict())


def resolve_run(
    path: Path | str,
    evaluate: bool = False,
    methods: list[str] | None = None,
    tasks: list[str] | None = None,
) -> ResolvedRun:
    """Load and validate ``path`` once; with ``evaluate``, also resolve the evaluation.

    Raises pipeline.config.ConfigError (bad file) or ValueError (unusable evaluation).
    """
    config = load_run_config(path)
    return resolved(config, evaluate, methods, tasks)


def resolved(
    config: RunConfig, evaluate: bool = False, methods: list[str] | None = None, tasks: list[str] | None = None
) -> ResolvedRun:
    """A ResolvedRun of an already loaded config (tests and benchmarks build configs in code)."""
    evaluation = resolve_evaluation(config, methods, tasks) if evaluate else None
    return ResolvedRun(config, RunLayout(config.run_dir), evaluation)

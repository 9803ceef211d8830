"""`crocopipe evaluate CONFIG`: downstream evaluation of the pretrained methods, then the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def resolve_evaluation(run, methods: list[str] | None = None, tasks: list[str] | None = None):
    """(EvaluateConfig, backbone spec dict) of a RunConfig, with CLI overrides validated.

    Raises ValueError with a user-facing message.
    """
    from pydantic import ValidationError

    from evaluation.config import EvaluateConfig
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
    spec = preset_spec(run.pretrain.preset, size)
    return cfg, spec.to_dict()


def evaluate(
    config: Path = typer.Argument(..., help="run TOML (its \\[evaluate] section; defaults when absent)"),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="evaluate only this method (repeatable)"),
    task: Optional[list[str]] = typer.Option(None, "--task", "-t", help="only this task: depth, flow, pose, nyuv2, sintel_clean or sintel_final (repeatable)"),
) -> None:
    """Train heads on the held-out val scenes (probe or fine-tune) and write <run_dir>/tables/."""
    from pipeline.config import ConfigError, load_run_config
    from pipeline.prefect_env import configure_prefect

    try:
        run = load_run_config(config)
        cfg, spec = resolve_evaluation(run, method, task)
    except (ConfigError, ValueError) as err:
        typer.echo(f"{config}: {err}" if not isinstance(err, ConfigError) else str(err), err=True)
        raise typer.Exit(2) from None
    from evaluation.data import MissingValSplitError
    from evaluation.plan import MissingCheckpointError, StaleResultError, pending_jobs, plan_jobs, tables_current

    try:  # the same checks the flow makes, here before a Prefect server is started
        jobs = plan_jobs(run.run_dir, cfg, run.corpus_dir)
        todo = pending_jobs(jobs, cfg, spec)
    except (MissingCheckpointError, MissingValSplitError, StaleResultError, ValueError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if not todo and tables_current(run.run_dir, jobs):
        typer.echo(f"{len(jobs)} evaluations ({len(jobs)} already done); tables up to date: "
                   f"{run.run_dir / 'tables' / 'results.md'}")
        return
    configure_prefect(run.prefect_home)
    from pipeline.flows.evaluate import evaluate_flow

    out = evaluate_flow(str(run.run_dir), cfg.model_dump(mode="json"), spec)
    typer.echo(f"{out['jobs']} evaluations ({out['reused']} already done)")
    for kind, path in out["tables"].items():
        typer.echo(f"{kind}: {path}")

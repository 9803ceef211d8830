"""`crocopipe plan CONFIG`: stages, counts and cost estimates of a run, without running it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer


def plan(
    config: Path = typer.Argument(..., help="run TOML"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """Print each stage's units, pairs, shards, bytes, optimiser steps, FLOPs per step and estimated
    GPU-hours (from the model's FLOPs and the [plan] gpu_tflops assumption). Renders and trains nothing."""
    from pipeline.config import ConfigError
    from pipeline.corpus.plan import CorpusPlanError
    from pipeline.resolved import resolve_run
    from pipeline.run_plan import format_plan, plan_run

    try:
        result = plan_run(resolve_run(config).config)
    except (ConfigError, CorpusPlanError, ValueError) as err:
        message = str(err)
        if isinstance(err, CorpusPlanError) and "[plan]" not in message:
            message += " (set [plan] assumed_scenes to plan without the dataset)"
        typer.echo(message if isinstance(err, ConfigError) else f"{config}: {message}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"stages": [asdict(s) for s in result.stages], "assumptions": result.assumptions},
                              indent=2, default=str))
    else:
        typer.echo(format_plan(result, str(config)))

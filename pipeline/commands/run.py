"""`crocopipe run CONFIG` (the whole study) and `crocopipe schedule CONFIG --cron ...`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED = 1, 2, 3


def _load(config: Path):
    """The run resolved once (config validated, evaluation resolved), or exit 2."""
    from pipeline.config import ConfigError
    from pipeline.resolved import resolve_run

    try:
        return resolve_run(config, evaluate=True)
    except (ConfigError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _check_packages(run) -> None:
    """A corpus still to render whose optional backend is missing: exit 2 before Prefect starts."""
    from pipeline.config import ConfigError
    from pipeline.preflight import check_packages
    from pipeline.stages import corpus_done

    try:
        done = corpus_done(run)
    except Exception:  # an unplannable corpus: the generate stage reports it
        done = False
    try:
        if not done:
            check_packages(run.config.corpus)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _finished(run) -> bool:
    from pipeline.stages import all_done

    try:
        return all_done(run)
    except (FileNotFoundError, ValueError):  # missing val split / checkpoints: the flow will say
        return False


def run(config: Path = typer.Argument(..., help="run TOML with [corpus], [pretrain] and [evaluate]")) -> None:
    """Generate the corpus, pretrain every method, evaluate them and write the tables; re-run to resume."""
    from pipeline.corpus.lock import RunLock, RunLockedError

    resolved = _load(config)
    if _finished(resolved):
        typer.echo(f"every stage of {resolved.run_dir} is complete; tables: {resolved.layout.results_md}")
        return
    _check_packages(resolved)
    try:
        lock = RunLock(resolved.run_dir, purpose="run").acquire()
    except RunLockedError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_LOCKED) from None
    try:
        from pipeline.prefect_env import configure_prefect

        configure_prefect(resolved.layout.prefect_home)
        from pipeline.flows.history import command_api
        from pipeline.flows.run import run_flow

        t0 = time.perf_counter()
        try:
            # One API for the whole command: the stages' subflows reuse it instead of starting and
            # stopping an embedded server of their own under the running parent flow.
            with command_api():
                stages = run_flow(str(Path(config).resolve()), resolved)
        except Exception as err:
            typer.echo(f"error: run failed: {err}. Finished work is kept; re-run the command to resume.", err=True)
            raise typer.Exit(EXIT_FAILED) from None
    finally:
        lock.release()
    for name, info in stages.items():
        typer.echo(f"{name}: {json.dumps(info)}")
    typer.echo(f"total: {time.perf_counter() - t0:.1f} s")


def schedule(
    config: Path = typer.Argument(..., help="run TOML"),
    cron: str = typer.Option(..., "--cron", help='cron schedule, e.g. "0 3 * * *" (03:00 every day)'),
    name: Optional[str] = typer.Option(None, help="deployment name (default: crocopipe-<run folder name>)"),
    timezone: Optional[str] = typer.Option(None, help="IANA time zone of the cron schedule (default UTC)"),
) -> None:
    """Register the end-to-end flow as a Prefect deployment with a cron schedule and serve it.

    The process keeps running (like a Prefect worker) and executes each scheduled run; point it at
    a Prefect server with PREFECT_API_URL to see the deployment and its runs in the UI, or trigger
    one by hand with `prefect deployment run 'crocopipe-run/<name>'`.
    """
    resolved = _load(config)
    fields = cron.split()
    if len(fields) != 5 or not all(set(f) <= set("0123456789*/,-") or f.isalpha() for f in fields):
        # the quick check, before Prefect starts; Prefect validates the values below
        typer.echo(f"error: invalid cron schedule {cron!r}: expected 5 fields (minute hour day month weekday)",
                   err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    from pipeline.prefect_env import configure_prefect

    configure_prefect(resolved.layout.prefect_home)
    from pipeline.flows.run import run_flow

    deployment = name or f"crocopipe-{resolved.run_dir.name}"
    try:
        from prefect.client.schemas.schedules import construct_schedule

        construct_schedule(cron=cron, timezone=timezone or "UTC")
    except Exception as err:  # croniter / pydantic raise several types
        typer.echo(f"error: invalid cron schedule {cron!r}: {err}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(f"serving deployment 'crocopipe-run/{deployment}' on cron {cron!r}; Ctrl-C stops it")
    from prefect.schedules import Cron

    run_flow.serve(name=deployment, schedules=[Cron(cron, timezone=timezone or "UTC")],
                   parameters={"config_path": str(Path(config).resolve())})

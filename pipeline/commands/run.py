"""`crocopipe run CONFIG` (the whole study) and `crocopipe schedule CONFIG --cron ...`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_LOCKED, PLAIN_HELP, QUIET_HELP, VERBOSE_HELP


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


def run(
    config: Path = typer.Argument(..., help="run TOML with [corpus], [pretrain] and [evaluate]"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """Generate the corpus, pretrain every method, evaluate them and write the tables; re-run to resume."""
    from pipeline.run_lock import RunLock, RunLockedError

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
        from pipeline.early_server import start_early, stop_early
        from pipeline.prefect_env import configure_prefect

        home = configure_prefect(resolved.layout.prefect_home, verbose=verbose)
        start_early()
        from pipeline.console import choose_mode, human_seconds
        from pipeline.flows.history import command_api
        from pipeline.flows.run import run_flow

        display = _run_display(resolved, choose_mode(quiet, plain))
        if display.mode != "quiet":
            display.console.print(f"crocopipe run {resolved.run_dir} (Prefect log: {home / 'prefect.log'})",
                                  markup=False, highlight=False, soft_wrap=True)
        t0 = time.perf_counter()
        try:
            # One API for the whole command: the stages' subflows reuse it instead of starting and
            # stopping an embedded server of their own under the running parent flow.
            with display, command_api(resolved.run_dir):
                stages = run_flow(str(Path(config).resolve()), resolved)
        except Exception as err:
            typer.echo(f"error: run failed: {err}. Finished work is kept; re-run the command to resume "
                       f"(details: {home / 'prefect.log'}).", err=True)
            raise typer.Exit(EXIT_FAILED) from None
    finally:
        stop_early()  # a server no flow adopted
        lock.release()
    for name, info in stages.items():
        typer.echo(_stage_line(name, info, human_seconds))
    typer.echo(f"total: {human_seconds(time.perf_counter() - t0)}")


def _run_display(resolved, mode: str):
    """The live display of the three stages; complete ones are marked skipped from the start."""
    from pipeline.console import Display, evaluate_stage, generate_stage, pretrain_stage
    from pipeline.stages import corpus_done, pretrain_done, pretrain_methods

    started = time.time()
    display = Display([generate_stage(resolved, started), pretrain_stage(resolved, pretrain_methods(resolved)),
                       evaluate_stage(resolved, started)], mode=mode)
    if corpus_done(resolved):
        display.skip("generate", "skipped (corpus complete)")
    if pretrain_done(resolved):
        display.skip("pretrain", "skipped (weights complete)")
    return display


def _stage_line(name: str, info: dict, human_seconds) -> str:
    """'generate: done, 8 units (0 reused), 1 min 05 s' -- the stage's result for people."""
    parts = [str(info.get("status", ""))]
    if "units" in info:
        parts.append(f"{info['units']} units ({info.get('units_reused', 0)} reused)")
    if "methods" in info:
        parts.append(", ".join(info["methods"]))
    if "jobs" in info:
        parts.append(f"{info['jobs']} jobs ({info.get('reused', 0)} reused)")
    if "markdown" in info:
        parts.append(str(info["markdown"]))
    if "seconds" in info:
        parts.append(human_seconds(float(info["seconds"])))
    return f"{name}: " + ", ".join(p for p in parts if p)


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

    from pipeline.flows.embedded_server import run_folder_tag

    # each scheduled run takes the run folder's lock itself (pipeline.flows.run)
    run_flow.serve(name=deployment, schedules=[Cron(cron, timezone=timezone or "UTC")],
                   parameters={"config_path": str(Path(config).resolve())}, tags=[run_folder_tag(resolved.run_dir)])

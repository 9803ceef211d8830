"""`crocopipe evaluate CONFIG`: downstream evaluation of the pretrained methods, then the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate(
    config: Path = typer.Argument(..., help="run TOML (its [evaluate] section; defaults when absent)"),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="evaluate only this method (repeatable)"),
    task: Optional[list[str]] = typer.Option(None, "--task", "-t", help="only this task: depth, flow, pose, correspondence, cross_view_gain, nyuv2, sintel_clean or sintel_final (repeatable)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also print Prefect's own log lines (always in <run_dir>/prefect/prefect.log)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only errors and the final summary"),
    plain: bool = typer.Option(False, "--plain", help="plain progress lines instead of the live display (the default when output is not a terminal)"),
) -> None:
    """Train heads on the held-out val scenes (probe or fine-tune) and write <run_dir>/tables/."""
    from pipeline.config import ConfigError
    from pipeline.early_server import start_early, stop_early
    from pipeline.prefect_env import configure_prefect
    from pipeline.resolved import resolve_run

    try:
        run = resolve_run(config, evaluate=True, methods=method, tasks=task)
    except (ConfigError, ValueError) as err:
        typer.echo(f"{config}: {err}" if not isinstance(err, ConfigError) else str(err), err=True)
        raise typer.Exit(2) from None
    from evaluation.val_split import MissingValSplitError
    from evaluation.plan import MissingCheckpointError, StaleResultError, pending_jobs, plan_jobs, tables_current
    from pipeline.run_lock import RunLock, RunLockedError

    cfg, spec, layout = run.evaluation.config, run.evaluation.spec, run.layout
    try:  # before the checks, so that a run folder in use is reported as such (a missing one is not created)
        lock = RunLock(layout.root, purpose="evaluate").acquire() if layout.root.is_dir() else None
    except RunLockedError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from None
    try:
        try:  # the checks the flow would make, here before a Prefect server is started
            jobs = plan_jobs(layout, cfg)
            todo = pending_jobs(jobs, cfg, spec)
            _check_checkpoints_load(todo)
        except (MissingCheckpointError, MissingValSplitError, StaleResultError, ValueError) as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(2) from None
        if not todo and tables_current(layout, jobs):
            typer.echo(f"{len(jobs)} evaluations ({len(jobs)} already done); tables up to date: {layout.results_md}")
            return
        lock = lock or RunLock(layout.root, purpose="evaluate").acquire()
        import time

        configure_prefect(layout.prefect_home, verbose=verbose)
        start_early()
        from pipeline.console import Display, choose_mode, evaluate_stage, human_seconds
        from pipeline.flows.evaluate import evaluate_flow
        from pipeline.flows.history import command_api

        t0 = time.perf_counter()
        stage = evaluate_stage(run, time.time(), jobs, {j.result for j in todo})
        with Display([stage], mode=choose_mode(quiet, plain)), command_api(layout.root):
            out = evaluate_flow(str(layout.root), cfg.model_dump(mode="json"), spec, [j.as_dict() for j in jobs])
    finally:
        stop_early()  # a server no flow adopted
        if lock is not None:
            lock.release()
    typer.echo(f"{out['jobs']} evaluations ({out['reused']} already done) in {human_seconds(time.perf_counter() - t0)}")
    for kind, path in out["tables"].items():
        typer.echo(f"{kind}: {path}")


def _check_checkpoints_load(jobs) -> None:
    """Open every checkpoint the pending jobs need once, before Prefect starts: an unreadable file
    is one line (file and cause, training.models.loading.UnreadableCheckpointError) and exit 2,
    instead of a task that fails the same way on every retry."""
    from training.models.loading import read_checkpoint

    for path in sorted({job.checkpoint for job in jobs if job.checkpoint}):
        read_checkpoint(path)

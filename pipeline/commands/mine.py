"""`crocopipe mine CONFIG`: mine co-visible pairs from posed RGB-D captures into a corpus.

Exit codes as for generate: 0 success, 1 failure of the work, 2 bad input, 3 run folder in use.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_LOCKED
from pipeline.commands.corpus import _fail


def mine(config: Path = typer.Argument(..., help="TOML with run_dir and a [mine] section")) -> None:
    """Mine pairs from ScanNet / ARKitScenes / TUM / frames.jsonl sequences into <run_dir>/corpus; re-run to resume."""
    from pipeline.config import ConfigError
    from pipeline.corpus.build import CorpusStateError, check_corpus_dir
    from pipeline.run_lock import RunLock, RunLockedError
    from pipeline.corpus.mine import finished_mined_corpus, plan_mine_units
    from pipeline.corpus.plan import CorpusPlanError
    from pipeline.mine_config import load_mine_config

    try:
        run = load_mine_config(config)
        units = plan_mine_units(run.mine)
        check_corpus_dir(run.corpus_dir, run.mine)
    except (ConfigError, CorpusPlanError, CorpusStateError) as err:
        _fail(err, EXIT_BAD_INPUT)
    try:
        lock = RunLock(run.run_dir, purpose="mine").acquire()
    except RunLockedError as err:
        _fail(err, EXIT_LOCKED)
    try:
        info = finished_mined_corpus(run.corpus_dir, run.mine, units)
        if info is not None:
            counts = info["counts"]
            typer.echo(f"corpus {info['corpus_id']} in {run.corpus_dir} is already complete: "
                       f"{counts['pairs']['train']} train + {counts['pairs']['val']} val pairs")
            return
        _mine_locked(run, len(units))
    finally:
        lock.release()


def _mine_locked(run, n_units: int) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.prefect_env import configure_prefect

    configure_prefect(run.prefect_home)
    from pipeline.flows.mine import run_mine

    with Progress(TextColumn("[bold]sequences"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}")) as bar:
        task_id = bar.add_task("", total=n_units)

        def on_unit(summary: dict) -> None:
            state = "reused" if summary["reused"] else f"{summary['pairs_written']} pairs"
            bar.update(task_id, completed=summary["done"], description=f"{summary['unit_id']} ({state})")

        try:
            result = run_mine(run, progress=on_unit)
        except Exception as err:  # the flow's own error (e.g. a sequence without valid poses), logged by Prefect
            _fail(f"mining failed: {err}. Completed sequences are kept; re-run the command to resume.", EXIT_FAILED)
    counts = result["counts"]
    typer.echo(f"corpus {result['corpus_id']} in {result['corpus_dir']}: {counts['pairs']['train']} train + "
               f"{counts['pairs']['val']} val pairs from {result['units']} sequences "
               f"({result['units_reused']} reused); pair list {Path(result['corpus_dir']) / 'pairs.parquet'}")

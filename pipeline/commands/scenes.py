"""`crocopipe scenes CONFIG`: the scene check on its own, before spending anything on rendering.

Loads every scene of the config once (as generate's first step does), prints the report table,
writes it to <run_dir>/scenes/check.md (and check.json) and a Prefect table artifact. Exit 0 when
every scene is usable (or refused ones would be skipped: on_scene_error = "skip"), 2 when a scene
is unusable or the config is bad, 3 when another command holds the run folder.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.commands.corpus import EXIT_BAD_INPUT, EXIT_LOCKED, _fail


def scenes(config: Path = typer.Argument(..., help="run TOML with a [corpus] section")) -> None:
    """Load every scene once and report triangles, extent, up axis, floor, texture, image information."""
    from pipeline.config import ConfigError, load_run_config
    from pipeline.run_lock import RunLock, RunLockedError
    from pipeline.corpus.plan import CorpusPlanError, resolve_scenes

    try:
        run = load_run_config(config)
        resolve_scenes(run.corpus)
    except (ConfigError, CorpusPlanError) as err:
        _fail(err, EXIT_BAD_INPUT)
    try:
        lock = RunLock(run.run_dir, purpose="scenes").acquire()
    except RunLockedError as err:
        _fail(err, EXIT_LOCKED)
    try:
        rows = _check(run)
    finally:
        lock.release()
    print_table(rows)
    bad = [r for r in rows if r["verdict"] != "ok"]
    typer.echo(f"report: {run.layout.scene_check_dir / 'check.md'}")
    if bad and run.corpus.on_scene_error == "fail":
        from pipeline.corpus.scene_check import failure_message

        _fail(failure_message(rows), EXIT_BAD_INPUT)
    if bad:
        typer.echo(f"{len(bad)} scene(s) will be skipped (on_scene_error = \"skip\"): "
                   + ", ".join(r["scene_id"] for r in bad))


def _check(run) -> list[dict]:
    from pipeline.prefect_env import configure_prefect

    configure_prefect(run.prefect_home)
    from pipeline.flows.history import command_api
    from pipeline.flows.scenes import check_scenes_flow

    with command_api():
        return check_scenes_flow(str(run.run_dir), run.corpus.model_dump_json())


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from pipeline.corpus.scene_check import TABLE_COLUMNS, table_rows

    table = Table(title="scene check")
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="right" if column not in ("scene_id", "up", "units", "verdict") else "left")
    for row in table_rows(rows):
        style = None if row["verdict"] == "ok" else "red"
        table.add_row(*(str(row[c]) for c in TABLE_COLUMNS), style=style)
    Console(width=160).print(table)
    for row in rows:
        if row["verdict"] != "ok":
            typer.echo(f"  {row['scene_id']}: {row['reason']}")

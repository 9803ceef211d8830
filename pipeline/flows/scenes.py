"""Prefect flow ``check_scenes``: the scene check on its own (``crocopipe scenes CONFIG``).

The same step opens the generate flow; here it always returns its rows (refused scenes included)
so the command can show the table and decide the exit code. Import this module only after
pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from pipeline.config import CorpusConfig
from pipeline.corpus.scene_check import check_scenes, write_report
from pipeline.corpus.plan import resolve_scenes
from pipeline.flows.generate import _scene_artifact, _unit_executor
from rendering.layout import RunLayout


@flow(name="check_scenes", log_prints=False)
def check_scenes_flow(run_dir: str, corpus_json: str) -> list[dict]:
    """Report rows of every scene of the run's corpus config (written to <run>/scenes too)."""
    from pipeline.flows import generate

    corpus = CorpusConfig.model_validate_json(corpus_json)
    layout = RunLayout(Path(run_dir))
    with _unit_executor(corpus, layout.corpus_dir):
        rows = check_scenes(resolve_scenes(corpus), corpus, layout.scene_check_dir / "cache", generate._EXECUTOR)
    write_report(layout.scene_check_dir, rows)
    _scene_artifact(rows)
    return rows

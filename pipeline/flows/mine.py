"""Prefect flow ``mine_corpus``: one task per capture sequence, then a merge task.

Wiring only, in the shape of generate_corpus: units run in a spawn process pool of ``workers``
miners; the artifact store (complete shard + unit manifest) is the resume state and Prefect's
INPUTS+TASK_SOURCE cache in <run_dir>/prefect/results only skips finished units faster.

Import this module only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.futures import as_completed
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.corpus.build import prepare_corpus_dir
from pipeline.corpus.mine import MineUnit, merge_mined_corpus, plan_mine_units, run_mine_unit
from pipeline.corpus.unit import completed_unit
from pipeline.mine_config import MineConfig, MineRunConfig
from pipeline.process_pool import tied_process_pool
from pipeline.run_lock import RunLock

_EXECUTOR: ProcessPoolExecutor | None = None
_PROGRESS: Callable[[dict], None] | None = None


@task(name="mine-sequence", task_run_name="sequence {unit[unit_id]}", retries=0,
      cache_policy=INPUTS + TASK_SOURCE, persist_result=True, result_serializer="json")
def mine_unit(unit: dict, corpus_dir: str, mine_json: str, config_hash: str) -> dict:
    """Mine one sequence (or find it complete). No retries: a bad sequence is not transient."""
    if _EXECUTOR is not None:
        summary = _EXECUTOR.submit(run_mine_unit, unit, corpus_dir, mine_json, config_hash).result()
    else:
        summary = run_mine_unit(unit, corpus_dir, mine_json, config_hash)
    return {k: summary[k] for k in ("unit_id", "split", "shard", "shard_sha256", "pairs_written", "reused")}


@task(name="merge-mined-corpus", cache_policy=NO_CACHE)
def merge_units(corpus_dir: str, mine_json: str, units: list[dict]) -> dict:
    info = merge_mined_corpus(Path(corpus_dir), MineConfig.model_validate_json(mine_json),
                              [MineUnit(**u) for u in units])
    return {"corpus_id": info["corpus_id"], "counts": info["counts"], "rejections": info["rejections"],
            "shards": info["shards"]}


@flow(name="mine_corpus", log_prints=False)
def mine_corpus(config_path: str) -> dict:
    """Mine (or finish) the corpus of a mining config; returns counts."""
    from pipeline.mine_config import load_mine_config

    config: MineRunConfig = load_mine_config(config_path)
    units = plan_mine_units(config.mine)
    with RunLock(config.layout.root, purpose="mine"):  # inherited when the command holds it
        return _mine(config, units)


def _mine(config: MineRunConfig, units: list) -> dict:
    prepare_corpus_dir(config.corpus_dir, config.mine, units)
    config_hash = config.mine.content_hash()
    mine_json = config.mine.model_dump_json()
    futures = []
    for unit in units:
        complete = completed_unit(unit, config.corpus_dir, config_hash, check_hash=False) is not None
        futures.append(mine_unit.with_options(refresh_cache=not complete).submit(
            unit.as_dict(), str(config.corpus_dir), mine_json, config_hash))
    reused = 0
    for done, future in enumerate(as_completed(futures), start=1):
        summary = future.result()
        summary["reused"] = bool(summary["reused"]) or future.state.name == "Cached"
        reused += summary["reused"]
        if _PROGRESS is not None:
            _PROGRESS({"done": done, "total": len(units), **summary})
    merged = merge_units.submit(str(config.corpus_dir), mine_json, [u.as_dict() for u in units]).result()
    counts = merged["counts"]
    create_markdown_artifact(
        f"# Mined corpus `{merged['corpus_id']}`\n\nFolder: `{config.corpus_dir}`\n\n"
        f"Sequences {len(units)} ({reused} already complete); pairs train {counts['pairs']['train']}, "
        f"val {counts['pairs']['val']}; exact scores computed {counts['attempts']}.\n\nRejected candidates: "
        + (", ".join(f"{k} {v}" for k, v in merged["rejections"].items()) or "none"),
        key="mined-corpus-summary", description="mined pair corpus summary")
    create_table_artifact([{k: s[k] for k in ("path", "split", "samples", "size", "sha256")} for s in merged["shards"]],
                          key="mined-corpus-shards", description="shards: samples, bytes, sha256")
    return {"corpus_dir": str(config.corpus_dir), "units": len(units), "units_reused": reused, **merged}


def run_mine(config: MineRunConfig, progress: Callable[[dict], None] | None = None,
             history_timeout: float = 120.0) -> dict:
    """Run the flow with a spawn pool of ``workers`` miners; waits for the task-run history."""
    global _EXECUTOR, _PROGRESS
    from pipeline.flows.history import command_api, wait_for_task_run_history

    _PROGRESS = progress
    try:
        with tied_process_pool(config.mine.workers) as executor, command_api(config.layout.root), \
                temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: config.layout.prefect_results}):
            _EXECUTOR = executor  # its workers die with this process (pipeline.process_pool)
            flow_fn = mine_corpus.with_options(task_runner=ThreadPoolTaskRunner(max_workers=config.mine.workers))
            state = flow_fn(str(config.source), return_state=True)
            result = state.result()
            result["flow_run_id"] = str(state.state_details.flow_run_id)
            result["task_runs_recorded"] = wait_for_task_run_history(
                state.state_details.flow_run_id, expected=result["units"] + 1, timeout=history_timeout)
    finally:
        _EXECUTOR, _PROGRESS = None, None
    return result

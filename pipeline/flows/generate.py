"""Prefect flow ``generate_corpus``: one task per work unit, then a merge task.

Wiring only. Units execute in a spawn process pool (one renderer per process, true parallelism);
tasks hand over small values (unit fields, paths, the config as JSON) and return short summaries.
Resume safety comes from the artifact store (pipeline.corpus.unit); Prefect's INPUTS+TASK_SOURCE
cache, persisted in <run_dir>/prefect/results, only skips units faster, and is bypassed (refresh_cache)
whenever a unit's files do not look complete, so a deleted shard is never "cached".

Import this module only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.config import CorpusConfig, RunConfig
from pipeline.corpus.build import check_corpus_dir, merge_corpus, prepare_corpus_dir
from pipeline.corpus.identity import units_hash
from pipeline.corpus.plan import WorkUnit, plan_units, previous_assignment
from pipeline.corpus.scene_check import run_scene_check, table_rows
from pipeline.corpus.unit import completed_unit, render_process_pool, run_unit
from pipeline.flows.artifact_images import png_markdown
from pipeline.flows.names import flow_run_namer
from pipeline.process_pool import kill_pool
from pipeline.run_lock import RunLock
from rendering.atomic import remove_temporary_files
from pipeline.flows.retry import transient_only
from rendering.layout import CorpusLayout, RunLayout

# Set by the flow for the duration of its run (tasks run in threads of the flow's process);
# None on a Dask worker, where the unit then runs inline in that worker process.
_EXECUTOR: ProcessPoolExecutor | None = None
ProgressCallback = Callable[[dict], None]
_PROGRESS: ProgressCallback | None = None
# Set when the flow is interrupted: queued and retried units stop instead of rendering inline.
_STOPPING = threading.Event()


class GenerationStopped(RuntimeError):
    """The flow was interrupted; unfinished units are left to the next run."""


@task(
    name="render-unit",
    task_run_name="unit {unit[unit_id]}",
    retries=2,
    retry_delay_seconds=2,
    # retried only while the command is not stopping, and only for errors that may not repeat
    retry_condition_fn=lambda task_, run_, state: not _STOPPING.is_set() and transient_only(task_, run_, state),
    cache_policy=INPUTS + TASK_SOURCE,
    persist_result=True,
    result_serializer="json",
)
def render_unit(unit: dict, corpus_dir: str, corpus_json: str) -> dict:
    """Render one unit (or find it complete); returns its short summary."""
    if _STOPPING.is_set():
        raise GenerationStopped("generation is stopping; the unit is left for the next run")
    if _EXECUTOR is not None:
        summary = _EXECUTOR.submit(run_unit, unit, corpus_dir, corpus_json).result()
    else:
        summary = run_unit(unit, corpus_dir, corpus_json)
    return {
        "unit_id": summary["unit_id"],
        "split": summary["split"],
        "shard": summary["shard"],
        "shard_sha256": summary["shard_sha256"],
        "pairs_written": summary["pairs_written"],
        "pairs_failed": len(summary["failed_pairs"]),
        "reused": summary["reused"],
    }


@task(name="merge-corpus", task_run_name="merge corpus", cache_policy=NO_CACHE)
def merge_units(corpus_dir: str, corpus_json: str, units: list[dict], skipped: list[dict] | None = None) -> dict:
    """manifest.parquet + corpus.json + dataset card from the complete units."""
    corpus = CorpusConfig.model_validate_json(corpus_json)
    info = merge_corpus(Path(corpus_dir), corpus, [WorkUnit(**u) for u in units], skipped=skipped or [])
    return {"corpus_id": info["corpus_id"], "counts": info["counts"], "rejections": info["rejections"],
            "shards": info["shards"], "skipped_scenes": info["skipped_scenes"]}


def _summary_markdown(corpus_dir: str, merged: dict, reused: int, total: int) -> str:
    counts = merged["counts"]
    lines = [
        f"# Pair corpus `{merged['corpus_id']}`",
        "",
        f"Folder: `{corpus_dir}`",
        "",
        "| split | scenes | pairs |",
        "| --- | ---: | ---: |",
        *(f"| {s} | {counts['scenes'][s]} | {counts['pairs'][s]} |" for s in ("train", "val")),
        "",
        f"Units: {total} ({reused} already complete). Pairs failed: {counts['failed_pairs']}. "
        f"Candidate views rendered: {counts['attempts']}.",
        "",
        "Rejected candidates: " + (", ".join(f"{k} {v}" for k, v in merged["rejections"].items()) or "none"),
    ]
    return "\n".join(lines)


@flow(name="generate_corpus", flow_run_name=flow_run_namer("generate", "run_dir"), log_prints=False)
def generate_corpus(run_dir: str, corpus_json: str) -> dict:
    """Generate (or finish) the corpus of a run (its [corpus] section as JSON, already validated);
    returns counts and the flow's unit count."""
    corpus = CorpusConfig.model_validate_json(corpus_json)
    layout = RunLayout(Path(run_dir))
    corpus_dir = layout.corpus_dir
    with RunLock(Path(run_dir), purpose="generate"):  # inherited when the command holds it
        with _unit_executor(corpus, corpus_dir):
            # The scene check runs first, in the flow itself (never retried): a refused scene stops
            # the run before any unit (on_scene_error = "fail") or is left out of the plan ("skip").
            rows, skipped = scene_check_step(corpus, layout)
            check_corpus_dir(corpus_dir, corpus)
            units = plan_units(corpus, skip=frozenset(s["scene_id"] for s in skipped),
                               previous=previous_assignment(layout.corpus.plan))
            prepare_corpus_dir(corpus_dir, corpus, units)
            merged, reused = _render_and_merge(units, corpus, corpus_dir, corpus_json, skipped)

    card = CorpusLayout(corpus_dir).card_dir
    figures = "\n".join(png_markdown(title, card / name) for title, name in
                        (("Contact sheet", "contact_sheet.png"), ("Co-visibility histogram", "overlap_histogram.png")))
    create_markdown_artifact(_summary_markdown(str(corpus_dir), merged, reused, len(units)) + "\n" + figures,
                             key="corpus-summary", description="pair corpus summary, contact sheet, histogram")
    create_table_artifact(
        [{k: s[k] for k in ("path", "split", "samples", "size", "sha256")} for s in merged["shards"]],
        key="corpus-shards",
        description="shards: samples, bytes, sha256",
    )
    return {"corpus_dir": str(corpus_dir), "units": len(units), "units_reused": reused, **merged}


def scene_check_step(corpus: CorpusConfig, layout: RunLayout) -> tuple[list[dict], list[dict]]:
    """The scene check with its report as a Prefect table artifact (also when it fails the run)."""
    from pipeline.corpus.scene_check import SceneCheckError

    try:
        rows, skipped = run_scene_check(corpus, layout, _EXECUTOR)
    except SceneCheckError as err:
        _scene_artifact(getattr(err, "rows", []))
        raise
    _scene_artifact(rows)
    return rows, skipped


def _scene_artifact(rows: list[dict]) -> None:
    if rows:
        bad = sum(r["verdict"] != "ok" for r in rows)
        create_table_artifact(table_rows(rows), key="scene-check",
                              description=f"scene check: {len(rows)} scenes, {bad} refused")


@contextmanager
def _unit_executor(corpus: CorpusConfig, corpus_dir: Path, warm_up: bool = False,
                   executor: ProcessPoolExecutor | None = None) -> Iterator[None]:
    """A spawn process pool of ``workers`` renderers for the flow run (threads task runner; on
    Dask each unit runs in its Dask worker process instead). A pool that run_generate already
    opened around the flow, warmed up while the Prefect server started, is used as it is; so is
    ``executor``, a pool of render processes the caller made (and shuts down itself).

    The workers die with this process (pipeline.process_pool). When the flow is interrupted, they
    are killed at once rather than waited for, their partial shards are removed, and no further
    unit starts (nor retries): finished units are kept for the next run."""
    global _EXECUTOR
    if corpus.task_runner != "threads":
        yield
        return
    outer = _EXECUTOR is not None
    own = not outer and executor is None  # made here: shut down here
    if not outer:
        _STOPPING.clear()
        _EXECUTOR = executor if executor is not None else render_process_pool(
            corpus.workers, corpus.backend, corpus.backend_options, warm_up=warm_up)
    executor = _EXECUTOR
    try:
        yield
    except BaseException:
        _STOPPING.set()
        kill_pool(executor)
        remove_temporary_files(corpus_dir)
        raise
    else:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    finally:
        if not outer:
            _EXECUTOR = None


def _render_and_merge(units: list[WorkUnit], corpus: CorpusConfig, corpus_dir: Path, corpus_json: str,
                      skipped: list[dict]) -> tuple[dict, int]:
    config_hash = units_hash(corpus)  # what run_unit records (units are found by their content key)
    progress_id = create_progress_artifact(progress=0.0, key="corpus-generation-progress",
                                           description=f"units of {corpus_dir}")
    futures = []
    for unit in units:
        looks_complete = completed_unit(unit, corpus_dir, config_hash, check_hash=False) is not None
        future = render_unit.with_options(refresh_cache=not looks_complete).submit(
            unit.as_dict(), str(corpus_dir), corpus_json
        )
        futures.append(future)
    done = reused = 0
    for future in as_completed(futures):
        summary = future.result()
        # A cache hit returns the summary of the run that made the unit: count it as reused.
        summary["reused"] = bool(summary["reused"]) or future.state.name == "Cached"
        done += 1
        reused += summary["reused"]
        update_progress_artifact(progress_id, 100.0 * done / len(units))
        if _PROGRESS is not None:
            _PROGRESS({"done": done, "total": len(units), **summary})
    merged = merge_units.submit(str(corpus_dir), corpus_json, [u.as_dict() for u in units], skipped).result()
    return merged, reused


def build_task_runner(corpus: CorpusConfig):
    if corpus.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as err:
            raise RuntimeError("task_runner = 'dask' needs prefect-dask: pip install 'crocopipe[dask]'") from err
        if corpus.dask_address:
            return DaskTaskRunner(address=corpus.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": corpus.workers, "threads_per_worker": 1, "processes": True})
    # One unit task more than render processes: a unit is always queued in the process pool, so a
    # render process that finishes one starts the next at once instead of waiting for this
    # process to record the finished task and start the next one.
    return ThreadPoolTaskRunner(max_workers=corpus.workers + 1)


def run_generate(config: RunConfig, progress: ProgressCallback | None = None, history_timeout: float = 120.0,
                 executor: ProcessPoolExecutor | None = None) -> dict:
    """Run the flow with the configured task runner and worker pool; returns its result.

    ``executor``: render processes the caller already started (pipeline.corpus.unit.
    render_process_pool, e.g. for the scene check), used instead of new ones; the caller shuts
    them down. After the flow, waits until the Prefect API holds the complete task-run history
    (see pipeline.flows.history) so the command can exit at once without losing any of it.
    """
    global _PROGRESS
    from pipeline.flows.history import command_api, wait_for_task_run_history

    flow_fn = generate_corpus.with_options(task_runner=build_task_runner(config.corpus))
    _PROGRESS = progress
    try:
        # Task results and cache records live in the run folder (the default result storage is a
        # local folder; an unsaved storage block cannot be passed to tasks in Prefect 3). The
        # render processes start while the Prefect server does.
        with _unit_executor(config.corpus, config.corpus_dir, warm_up=True, executor=executor), \
                command_api(config.run_dir), \
                temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: config.layout.prefect_results}):
            state = flow_fn(str(config.run_dir), config.corpus.model_dump_json(), return_state=True)
            result = state.result()
            flow_run_id = state.state_details.flow_run_id
            result["flow_run_id"] = str(flow_run_id)
            result["task_runs_recorded"] = wait_for_task_run_history(
                flow_run_id, expected=result["units"] + 1, timeout=history_timeout
            )
    finally:
        _PROGRESS = None
    return result

"""Prefect flow ``evaluate``: one task per (method, task, seed), then the tables.

Wiring only; the work is evaluation.jobs.run_job. The resume guard is the result file
``<run_dir>/eval/<method>/<task>/seed-<s>.json`` (written atomically when a run completes): a task
whose file exists returns at once, so a re-run does no work and a killed run resumes with the
first missing result. Import only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from evaluation.config import EvaluateConfig
from evaluation.plan import EvalJob, pending_jobs, plan_jobs
from evaluation.tables import protocol_summary
from pipeline.flows.artifact_images import markdown_cell, png_markdown
from pipeline.flows.names import flow_run_namer
from pipeline.run_lock import RunLock
from pipeline.flows.retry import transient_only
from rendering.layout import RunLayout
from pipeline.cores import available_cores
from pipeline.process_pool import tied_process_pool
from rendering.atomic import remove_temporary_files


# Set by the flow while it runs jobs in several processes (tasks run in threads of the flow's process).
_EXECUTOR: ProcessPoolExecutor | None = None


@task(name="evaluate-one", task_run_name="evaluate {job[method]} {job[task]} seed {job[seed]}", cache_policy=NO_CACHE,
      retries=1, retry_delay_seconds=2, retry_condition_fn=transient_only)
def evaluate_one(job: dict, corpus_dir: str, config: dict, spec: dict) -> dict:
    """Train and score one head; returns a short summary (reused=True when the result existed)."""
    from evaluation.jobs import run_job_in_process

    if _EXECUTOR is not None:
        result, reused = _EXECUTOR.submit(run_job_in_process, job, corpus_dir, config, spec).result()
    else:
        result, reused = run_job_in_process(job, corpus_dir, config, spec)
    if not reused:
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in result["metrics"].items() if isinstance(v, (int, float)))
        get_run_logger().info("%s %s seed %d: %s", job["method"], job["task"], job["seed"], metrics)
    return {**_summary(job, result), "reused": reused}


def _summary(job: dict, result: dict) -> dict:
    return {"method": job["method"], "task": job["task"], "seed": job["seed"],
            "seconds": result.get("seconds"), "split_by": result.get("split_by", "scene"),
            **{k: v for k, v in result["metrics"].items() if isinstance(v, float)}}


def _cuda(cfg: EvaluateConfig) -> bool:
    if cfg.device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


@contextmanager
def _job_processes(processes: int) -> Iterator[None]:
    """A spawn pool of job processes for the flow run; every process ends with the block."""
    global _EXECUTOR
    try:
        with tied_process_pool(processes) as executor:  # they die with this process, too
            _EXECUTOR = executor
            yield
    finally:
        _EXECUTOR = None


def artifact_rows(rows: list[dict]) -> list[dict]:
    """The CSV rows for people: values in the label's unit (percent where it says %), labels
    that render as written."""
    shown = []
    for row in rows:
        scale = 100.0 if row["label"].endswith("(%)") else 1.0
        digits = 1 if scale == 100.0 else 3
        std = f" ± {row['std'] * scale:.{digits}f}" if row["n_seeds"] > 1 else ""
        shown.append({
            "method": row["method"], "task": row["task"], "metric": markdown_cell(row["label"]),
            "value": f"n/a ({row['undefined']})" if row.get("undefined") else f"{row['mean'] * scale:.{digits}f}{std}",
            "seeds": row["seeds"],
            "paper": markdown_cell(row["paper"]) if row["paper"] else "",
        })
    return shown


@task(name="write-tables", task_run_name="write tables", cache_policy=NO_CACHE)
def tables(run_dir: str, config: dict, context: dict) -> dict:
    from evaluation.tables import write_tables

    cfg = EvaluateConfig.model_validate(config)
    return write_tables(Path(run_dir), list(cfg.methods), list(cfg.tasks), list(cfg.seeds), context)


@flow(name="evaluate", flow_run_name=flow_run_namer("evaluate", "run_dir"))
def evaluate_flow(run_dir: str, config: dict, spec: dict, jobs: list[dict] | None = None) -> dict:
    """Evaluate every configured (method, task, seed) on the run's val split; write the tables.

    ``spec`` is the backbone size (training.models.ModelSpec as a dict) used for the random-init
    baseline and as the input size of every method. ``jobs`` is the plan when the caller has
    already made it (evaluation.plan.plan_jobs, as dicts); otherwise the flow plans.
    """
    cfg = EvaluateConfig.model_validate(config)
    layout = RunLayout(Path(run_dir))
    corpus_dir = layout.corpus_dir
    with RunLock(layout.root, purpose="evaluate"):  # inherited when the command holds it
        for folder in (layout.eval_dir, layout.tables_dir):
            remove_temporary_files(folder)  # left by a killed run
        jobs = plan_jobs(layout, cfg) if jobs is None else [EvalJob(**j) for j in jobs]
        processes, threads = cfg.job_processes(len(pending_jobs(jobs, cfg, spec)), available_cores(), _cuda(cfg))
        job_config = {**config, "threads": threads}  # threads change no result fingerprint
        if processes == 1:
            summaries = [evaluate_one(j.as_dict(), str(corpus_dir), job_config, spec) for j in jobs]
        else:
            with _job_processes(processes):
                futures = [evaluate_one.submit(j.as_dict(), str(corpus_dir), job_config, spec) for j in jobs]
                summaries = [f.result() for f in futures]
        context = {"protocol": protocol_summary(cfg), "steps": cfg.steps,
                   "data": {s["task"]: s["split_by"] for s in summaries}}
        out = tables(run_dir, config, context)
    create_table_artifact(artifact_rows(out["rows"]), key="evaluation-table",
                          description="methods x tasks (mean/std across seeds, in the label's unit; 'paper' = published figure)")
    create_markdown_artifact(out["markdown_text"] + "\n" + png_markdown("Results", Path(out["png"])),
                             key="evaluation-summary", description="downstream evaluation with its figure")
    reused = sum(s["reused"] for s in summaries)
    return {"jobs": len(jobs), "reused": reused, "tables": {k: out[k] for k in ("markdown", "csv", "png")},
            "summaries": summaries}

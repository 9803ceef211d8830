"""Prefect flow ``evaluate``: one task per (method, task, seed), then the tables.

Wiring only; the work is evaluation.runner.run_one. The resume guard is the result file
``<run_dir>/eval/<method>/<task>/seed-<s>.json`` (written atomically when a run completes): a task
whose file exists returns at once, so a re-run does no work and a killed run resumes with the
first missing result. Import only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from evaluation.config import EvaluateConfig
from evaluation.plan import plan_jobs


@lru_cache(maxsize=8)
def _task_data(corpus_dir: str, task_name: str, size: int, max_pairs: int | None, test_fraction: float):
    """Head-train / test arrays of a task, built once per process and reused across methods/seeds."""
    from evaluation.data import read_val_pairs, split_by_scene, task_arrays

    pairs = read_val_pairs(Path(corpus_dir), max_pairs)
    train, test, how = split_by_scene(pairs, test_fraction)
    return task_arrays(train, task_name, size), task_arrays(test, task_name, size), how


def _backbone(method: str, checkpoint: str | None, spec: dict, seed: int):
    from evaluation.runner import load_method_backbone
    from training.models import ModelSpec

    return load_method_backbone(method, None if checkpoint is None else Path(checkpoint), ModelSpec(**spec), seed)


@task(name="evaluate-one", task_run_name="{job[method]}/{job[task]}/seed-{job[seed]}", cache_policy=NO_CACHE,
      retries=1, retry_delay_seconds=2)
def evaluate_one(job: dict, corpus_dir: str, config: dict, spec: dict) -> dict:
    """Train and score one head; returns a short summary (reused=True when the result existed)."""
    from evaluation.plan import EvalJob, existing_result
    from evaluation.runner import run_one, write_result

    cfg = EvaluateConfig.model_validate(config)
    fingerprint = cfg.fingerprint(spec)
    path = Path(job["result"])
    done = existing_result(EvalJob(**job), fingerprint)
    if done is not None:
        return {**_summary(job, done), "reused": True}
    backbone = _backbone(job["method"], job["checkpoint"], spec, job["seed"])
    if backbone.spec.img_size != spec["img_size"]:
        raise ValueError(f"{job['checkpoint']}: input size {backbone.spec.img_size} differs from the other "
                         f"methods' {spec['img_size']}; evaluate methods pretrained at the same crop size")
    train, test, how = _task_data(corpus_dir, job["task"], spec["img_size"], cfg.max_pairs, cfg.test_fraction)
    result = run_one(job["task"], job["method"], backbone, train, test, cfg, job["seed"])
    result["split_by"] = how
    result["checkpoint"] = job["checkpoint"]
    result["fingerprint"] = fingerprint
    result["spec"] = spec
    write_result(path, result)
    get_run_logger().info("%s/%s seed %d: %s", job["method"], job["task"], job["seed"], json.dumps(result["metrics"]))
    return {**_summary(job, result), "reused": False}


def _summary(job: dict, result: dict) -> dict:
    return {"method": job["method"], "task": job["task"], "seed": job["seed"],
            "seconds": result.get("seconds"), "split_by": result.get("split_by", "scene"),
            **{k: v for k, v in result["metrics"].items() if isinstance(v, float)}}


@task(name="write-tables", cache_policy=NO_CACHE)
def tables(run_dir: str, config: dict, context: dict) -> dict:
    from evaluation.tables import write_tables

    cfg = EvaluateConfig.model_validate(config)
    return write_tables(Path(run_dir), list(cfg.methods), list(cfg.tasks), list(cfg.seeds), context)


@flow(name="evaluate")
def evaluate_flow(run_dir: str, config: dict, spec: dict) -> dict:
    """Evaluate every configured (method, task, seed) on the run's val split; write the tables.

    ``spec`` is the backbone size (training.models.ModelSpec as a dict) used for the random-init
    baseline and as the input size of every method.
    """
    cfg = EvaluateConfig.model_validate(config)
    run = Path(run_dir)
    corpus_dir = run / "corpus"
    jobs = plan_jobs(run, cfg, corpus_dir)
    summaries = [evaluate_one(j.as_dict(), str(corpus_dir), config, spec) for j in jobs]
    context = {"protocol": cfg.protocol, "steps": cfg.steps,
               "split_by": ", ".join(sorted({s["split_by"] for s in summaries}))}
    out = tables(run_dir, config, context)
    create_table_artifact(out["rows"], key="evaluation-table",
                          description="methods x tasks (mean/std across seeds; 'paper' = published figure)")
    create_markdown_artifact(out["markdown_text"], key="evaluation-summary", description="downstream evaluation")
    reused = sum(s["reused"] for s in summaries)
    return {"jobs": len(jobs), "reused": reused, "tables": {k: out[k] for k in ("markdown", "csv", "png")},
            "summaries": summaries}

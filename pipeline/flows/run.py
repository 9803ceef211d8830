"""Prefect flow ``crocopipe-run``: generate -> pretrain -> evaluate -> tables, end to end.

Each stage is its own subflow (generate_corpus, pretrain, evaluate) and is skipped, without being
started, when its outputs are complete: the corpus (finished_corpus), every method's final weights
for this pretraining config (training.launch.is_complete), every evaluation result plus current
tables. A killed run resumes inside the stage it was in (units, checkpoints, result files).
Import only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger

from pipeline.config import load_run_config
from pipeline.stages import corpus_done, evaluate_done, pretrain_done, pretrain_methods


@flow(name="crocopipe-run")
def run_flow(config_path: str) -> dict:
    """The whole study for one run config; returns per-stage status and wall time (s)."""
    from pipeline.commands.evaluate import resolve_evaluation

    logger = get_run_logger()
    run = load_run_config(config_path)
    if run.pretrain is None:
        raise ValueError(f"{config_path}: `crocopipe run` needs a [pretrain] section")
    cfg, spec = resolve_evaluation(run)
    stages: dict[str, dict] = {}

    t0 = time.perf_counter()
    if corpus_done(run):
        stages["generate"] = {"status": "skipped (corpus complete)"}
    else:
        from pipeline.flows.generate import run_generate

        result = run_generate(run)
        stages["generate"] = {"status": "done", "units_reused": result["units_reused"], "units": result["units"]}
    stages["generate"]["seconds"] = round(time.perf_counter() - t0, 1)
    logger.info("generate: %s", stages["generate"])

    t0 = time.perf_counter()
    methods = pretrain_methods(run)
    if pretrain_done(run):
        stages["pretrain"] = {"status": "skipped (weights complete)"}
    else:
        from pipeline.flows.pretrain import pretrain_flow

        pretrain_flow(str(run.run_dir), run.pretrain.model_dump(mode="json"), methods)
        stages["pretrain"] = {"status": "done", "methods": methods}
    stages["pretrain"]["seconds"] = round(time.perf_counter() - t0, 1)
    logger.info("pretrain: %s", stages["pretrain"])

    t0 = time.perf_counter()
    if evaluate_done(run, cfg, spec):
        stages["evaluate"] = {"status": "skipped (results and tables current)"}
    else:
        from pipeline.flows.evaluate import evaluate_flow

        out = evaluate_flow(str(run.run_dir), cfg.model_dump(mode="json"), spec)
        stages["evaluate"] = {"status": "done", "jobs": out["jobs"], "reused": out["reused"]}
    stages["evaluate"]["seconds"] = round(time.perf_counter() - t0, 1)
    stages["tables"] = {"markdown": str(Path(run.run_dir) / "tables" / "results.md")}
    logger.info("evaluate: %s", stages["evaluate"])
    return stages

"""Prefect flow ``crocopipe-run``: generate -> pretrain -> evaluate -> tables, end to end.

Each stage is its own subflow (generate_corpus, pretrain, evaluate) and is skipped, without being
started, when its outputs are complete: the corpus (finished_corpus), every method's final weights
for this pretraining config (training.launch.is_complete), every evaluation result plus current
tables. A killed run resumes inside the stage it was in (units, checkpoints, result files).
Import only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, tags

from pipeline.flows.embedded_server import mark_crashed_runs, run_folder_tag
from pipeline.flows.names import flow_run_namer
from pipeline.resolved import ResolvedRun, resolve_run
from pipeline.run_lock import RunLock
from pipeline.stages import corpus_done, evaluation_plan, pretrain_done, pretrain_methods


@flow(name="crocopipe-run", flow_run_name=flow_run_namer("run", "config_path"), validate_parameters=False)
def run_flow(config_path: str, resolved: Any = None) -> dict:
    """The whole study for one run config; returns per-stage status and wall time (s).

    A deployment passes only ``config_path`` (the file is read at each scheduled run); the CLI,
    which has already resolved the config, passes the ResolvedRun as ``resolved``.
    """
    run: ResolvedRun = resolved if resolved is not None else resolve_run(config_path, evaluate=True)
    # The lock is inherited when the command holds it; a scheduled run takes it here.
    with RunLock(run.run_dir, purpose="run"), tags(run_folder_tag(run.run_dir)):
        mark_crashed_runs(run.run_dir)
        return run_stages(run)


def run_stages(run: ResolvedRun) -> dict:
    """The stages in order, each skipped when complete (call inside a flow run)."""
    logger = get_run_logger()
    if run.config.pretrain is None:
        raise ValueError(f"{run.source}: `crocopipe run` needs a [pretrain] section")
    evaluation = run.evaluation
    if evaluation is None:
        raise ValueError("crocopipe run needs the run resolved with its evaluation")
    stages: dict[str, dict] = {}

    t0 = time.perf_counter()
    if corpus_done(run):
        stages["generate"] = {"status": "skipped (corpus complete)"}
    else:
        from pipeline.flows.generate import run_generate

        result = run_generate(run.config)
        stages["generate"] = {"status": "done", "units_reused": result["units_reused"], "units": result["units"]}
    stages["generate"]["seconds"] = round(time.perf_counter() - t0, 1)
    logger.info("generate: %s", stages["generate"])

    t0 = time.perf_counter()
    methods = pretrain_methods(run)
    if pretrain_done(run):
        stages["pretrain"] = {"status": "skipped (weights complete)"}
    else:
        from pipeline.flows.pretrain import pretrain_flow

        pretrain_flow(str(run.run_dir), run.config.pretrain.model_dump(mode="json"), methods)
        stages["pretrain"] = {"status": "done", "methods": methods}
    stages["pretrain"]["seconds"] = round(time.perf_counter() - t0, 1)
    logger.info("pretrain: %s", stages["pretrain"])

    t0 = time.perf_counter()
    jobs, done = evaluation_plan(run)
    if done:
        stages["evaluate"] = {"status": "skipped (results and tables current)"}
    else:
        from pipeline.flows.evaluate import evaluate_flow

        out = evaluate_flow(str(run.run_dir), evaluation.config.model_dump(mode="json"), evaluation.spec,
                            [j.as_dict() for j in jobs])
        stages["evaluate"] = {"status": "done", "jobs": out["jobs"], "reused": out["reused"]}
    stages["evaluate"]["seconds"] = round(time.perf_counter() - t0, 1)
    stages["tables"] = {"markdown": str(run.layout.results_md)}
    logger.info("evaluate: %s", stages["evaluate"])
    return stages

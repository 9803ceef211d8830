"""Prefect flow: pretrain each configured method under torchrun, one after the other.

Import only after pipeline.prefect_env.configure_prefect. A failed task is retried; the retry's
training run resumes from the method's latest checkpoint, so no finished step is lost.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from pipeline.flows.names import flow_run_namer
from pipeline.run_lock import RunLock
from rendering.layout import PretrainLayout, RunLayout
from training.config import PretrainConfig
from training.jsonl import read_records
from training.launch import LaunchOptions, run_torchrun


@task(name="pretrain-method", task_run_name="pretrain {method}", retries=1, retry_delay_seconds=5, persist_result=False)
def pretrain_method(method: str, config: dict, corpus_dir: str, out_dir: str, launch: dict) -> str:
    """Train one method to completion; returns the path of its final weights."""
    logger = get_run_logger()
    cfg = PretrainConfig.model_validate(config)
    path = run_torchrun(cfg, method, Path(corpus_dir), Path(out_dir), LaunchOptions(**launch), on_line=logger.info)
    return str(path)


def _final_loss(out: PretrainLayout) -> str:
    metrics = out.metrics
    if not metrics.is_file():
        return "-"
    records, _ = read_records(metrics)
    return f"{records[-1]['loss']:.4f}" if records else "-"


@flow(name="pretrain", flow_run_name=flow_run_namer("pretrain", "methods"))
def pretrain_flow(run_dir: str, config: dict, methods: list[str], launch: dict | None = None, retries: int = 1) -> dict[str, str]:
    """Pretrain `methods` on <run_dir>/corpus into <run_dir>/pretrain/<method>/."""
    cfg = PretrainConfig.model_validate(config)
    layout = RunLayout(Path(run_dir))
    results = {}
    with RunLock(layout.root, purpose="pretrain"):  # inherited when the command holds it
        for method in methods:
            results[method] = pretrain_method.with_options(retries=retries)(
                method, cfg.model_dump(mode="json"), str(layout.corpus_dir), str(layout.pretrain(method).root), launch or {}
            )
    rows = "\n".join(f"| {m} | {cfg.preset} | {cfg.total_steps} | {_final_loss(layout.pretrain(m))} | {p} |"
                     for m, p in results.items())
    create_markdown_artifact(
        key="pretrain-summary",
        markdown=f"| method | preset | steps | final loss | weights |\n|---|---|---|---|---|\n{rows}\n",
        description="Pretraining results",
    )
    return results

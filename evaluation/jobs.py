"""One evaluation job (method, task, seed) as a plain function: the evaluate flow's task body."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from evaluation.config import BENCHMARK_TASKS, TASK_SOURCE, EvaluateConfig
from evaluation.plan import EvalJob, existing_result


@lru_cache(maxsize=8)
def task_data(corpus_dir: str, task_name: str, size: int, max_pairs: int | None, test_fraction: float):
    """Head-train / test arrays of a corpus task, built once per process and reused across methods/seeds."""
    from evaluation.data import read_val_pairs, split_by_scene, task_arrays

    pairs = read_val_pairs(Path(corpus_dir), max_pairs)
    train, test, how = split_by_scene(pairs, test_fraction)
    return task_arrays(train, task_name, size), task_arrays(test, task_name, size), how


@lru_cache(maxsize=4)
def benchmark_data(task_name: str, source_json: str, size: int, test_fraction: float):
    """Head-train / test arrays of a benchmark task (NYUv2, Sintel), built once per process."""
    from evaluation.benchmarks import nyuv2_arrays, sintel_arrays
    from evaluation.config import NYUv2Source, SintelSource

    if task_name == "nyuv2":
        return nyuv2_arrays(NYUv2Source.model_validate_json(source_json), size)
    source = SintelSource.model_validate_json(source_json)
    return sintel_arrays(source, task_name.removeprefix("sintel_"), size, test_fraction)


def run_job(job: EvalJob, corpus_dir: str, cfg: EvaluateConfig, spec: dict) -> tuple[dict, bool]:
    """(result, reused): the stored result when it exists for these settings, else a new one,
    written atomically to ``job.result``."""
    from evaluation.runner import load_method_backbone, run_one, write_result
    from training.models import ModelSpec

    fingerprint = cfg.fingerprint(spec, job.task)
    done = existing_result(job, fingerprint)
    if done is not None:
        return done, True
    checkpoint = None if job.checkpoint is None else Path(job.checkpoint)
    backbone = load_method_backbone(job.method, checkpoint, ModelSpec(**spec), job.seed)
    if backbone.spec.img_size != spec["img_size"]:
        raise ValueError(f"{job.checkpoint}: input size {backbone.spec.img_size} differs from the configured "
                         f"{spec['img_size']}; evaluate methods pretrained at the same crop size")
    if job.task in BENCHMARK_TASKS:
        source = getattr(cfg, TASK_SOURCE[job.task])
        train, test, how = benchmark_data(job.task, source.model_dump_json(), spec["img_size"], cfg.test_fraction)
    else:
        train, test, how = task_data(corpus_dir, job.task, spec["img_size"], cfg.max_pairs, cfg.test_fraction)
    result = run_one(job.task, job.method, backbone, train, test, cfg, job.seed)
    result.update(split_by=how, checkpoint=job.checkpoint, fingerprint=fingerprint, spec=spec)
    write_result(Path(job.result), result)
    return result, False

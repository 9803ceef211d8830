"""One evaluation job (method, task, seed) as a plain function: the evaluate flow's task body."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from evaluation.config import EvaluateConfig
from evaluation.plan import EvalJob, existing_result
from evaluation.tasks import CORPUS, external_dataset, get_task

_EXTERNAL_CACHE_SIZE = 4
_external_cache: dict[tuple, tuple] = {}


def val_sources(cfg: EvaluateConfig, corpus_dir: str) -> tuple[tuple[str, str, float], ...]:
    """(label, folder, weight) of every corpus the corpus tasks read: ``corpora`` or the run's corpus."""
    if not cfg.corpora:
        return (("corpus", str(corpus_dir), 1.0),)
    return tuple((c.label, str(c.path), float(c.weight)) for c in cfg.corpora)


@lru_cache(maxsize=8)
def task_data(corpus_dir: str, task_name: str, size: int, max_pairs: int | None, test_fraction: float,
              sources: tuple[tuple[str, str, float], ...] = ()):
    """Head-train / test arrays of a corpus task and the val pairs taken from each corpus, built
    once per process and reused across methods/seeds. ``sources`` (label, folder, weight): a mixture."""
    from evaluation.val_split import read_val_mixture, read_val_pairs, split_by_scene, task_arrays

    if sources:
        pairs, counts = read_val_mixture([(label, Path(p), w) for label, p, w in sources], max_pairs)
    else:
        pairs = read_val_pairs(Path(corpus_dir), max_pairs)
        counts = {"corpus": len(pairs)}
    train, test, how = split_by_scene(pairs, test_fraction)
    return task_arrays(train, task_name, size), task_arrays(test, task_name, size), how, counts


@lru_cache(maxsize=4)
def zero_shot_data(corpus_dir: str, task_name: str, size: int, max_pairs: int | None,
                   sources: tuple[tuple[str, str, float], ...] = ()):
    """Arrays of a training-free task and the val pairs taken from each corpus: every val pair
    read (no head to train, so no split). ``sources`` (label, folder, weight): a mixture."""
    from evaluation.val_split import read_val_mixture, read_val_pairs, task_arrays

    if sources:
        pairs, counts = read_val_mixture([(label, Path(p), w) for label, p, w in sources], max_pairs)
    else:
        pairs = read_val_pairs(Path(corpus_dir), max_pairs)
        counts = {"corpus": len(pairs)}
    return task_arrays(pairs, task_name, size), counts


def external_data(task_name: str, section, size: int, test_fraction: float):
    """Head-train / test arrays of an external-dataset task (its registered builder, evaluation.tasks),
    built once per process for these settings and reused across methods and seeds."""
    task = get_task(task_name)
    key = (task_name, section.model_dump_json(), size, test_fraction)
    if key not in _external_cache:
        if len(_external_cache) >= _EXTERNAL_CACHE_SIZE:
            _external_cache.pop(next(iter(_external_cache)))
        _external_cache[key] = external_dataset(task).arrays(task, section, size, test_fraction)
    return _external_cache[key]


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
    if get_task(job.task).zero_shot:
        from evaluation.runner import pick_device
        from evaluation.zero_shot import run_zero_shot

        if cfg.threads is not None:
            import torch

            torch.set_num_threads(cfg.threads)
        sources = val_sources(cfg, corpus_dir) if cfg.corpora else ()
        data, counts = zero_shot_data(corpus_dir, job.task, spec["img_size"], cfg.max_pairs, sources)
        result = run_zero_shot(job.task, job.method, backbone, data, cfg, job.seed, pick_device(cfg.device))
        result.update(split_by="none (every val pair; nothing is trained)", checkpoint=job.checkpoint,
                      fingerprint=fingerprint, spec=spec, val_pairs_by_source=counts)
        write_result(Path(job.result), result)
        return result, False
    if get_task(job.task).source != CORPUS:
        section = cfg.external_section(job.task)
        train, test, how = external_data(job.task, section, spec["img_size"], cfg.test_fraction)
        counts = None
    else:
        sources = val_sources(cfg, corpus_dir) if cfg.corpora else ()
        train, test, how, counts = task_data(corpus_dir, job.task, spec["img_size"], cfg.max_pairs,
                                             cfg.test_fraction, sources)
    result = run_one(job.task, job.method, backbone, train, test, cfg, job.seed)
    result.update(split_by=how, checkpoint=job.checkpoint, fingerprint=fingerprint, spec=spec)
    if counts is not None:
        result["val_pairs_by_source"] = counts
    write_result(Path(job.result), result)
    write_tensorboard(job, result, cfg)
    return result, False


def run_job_in_process(job: dict, corpus_dir: str, config: dict, spec: dict) -> tuple[dict, bool]:
    """:func:`run_job` from small picklable values: the body of a job in a spawned job process
    (this module imports neither Prefect nor, until a job runs, torch)."""
    return run_job(EvalJob(**job), corpus_dir, EvaluateConfig.model_validate(config), spec)


def write_tensorboard(job: EvalJob, result: dict, cfg: EvaluateConfig) -> Path | None:
    """The job's metrics as TensorBoard scalars and hparams, beside its result file
    (``<method>/<task>/tensorboard/seed-<s>/``): `tensorboard --logdir <run_dir>` shows them
    next to the pretraining curves. Skipped (None) when TensorBoard does not import."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    folder = Path(job.result).parent / "tensorboard" / f"seed-{job.seed}"
    metrics = {k: float(v) for k, v in result["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    writer = SummaryWriter(str(folder))
    try:
        for key, value in metrics.items():
            writer.add_scalar(f"eval/{job.task}/{key}", value, cfg.steps)
        writer.add_hparams({"method": job.method, "task": job.task, "seed": job.seed, "protocol": cfg.protocol_overrides.get(job.task, cfg.protocol),
                            "steps": cfg.steps}, {f"final/{k}": v for k, v in metrics.items()}, run_name="hparams")
    finally:
        writer.close()
    return folder

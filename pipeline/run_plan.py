"""`crocopipe plan`: what a run config will do, counted before anything is rendered or trained.

Counts (units, pairs, shards, optimiser steps, pairs seen, evaluation jobs) come from the same
functions the stages use, so they are what a run does; sizes and times are estimates from stated
assumptions: bytes per pixel of the encoded members, the FLOPs of the model (training/flops.py)
and a sustained GPU throughput (``[plan] gpu_tflops``). Nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.config import RunConfig

# Encoded size assumptions for the corpus estimate (per pixel of one view).
JPEG_BYTES_PER_PIXEL = 0.6  # RGB, quality 95, indoor renders
PNG_RGB_BYTES_PER_PIXEL = 2.0
DEPTH_PNG_BYTES_PER_PIXEL = 1.0  # uint16, smooth surfaces
META_AND_TAR_BYTES = 5 * 1024 + 2048  # five tar headers + meta.json


@dataclass
class StagePlan:
    name: str
    facts: dict[str, object] = field(default_factory=dict)  # counted
    estimates: dict[str, object] = field(default_factory=dict)  # from the stated assumptions


@dataclass
class RunPlan:
    stages: list[StagePlan]
    assumptions: list[str]

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.name == name)


def _pair_bytes(run: RunConfig) -> int:
    s = run.corpus.sampler
    pixels = s.width * s.height
    image = JPEG_BYTES_PER_PIXEL if run.corpus.image_format == "jpg" else PNG_RGB_BYTES_PER_PIXEL
    return int(2 * pixels * (image + DEPTH_PNG_BYTES_PER_PIXEL) + META_AND_TAR_BYTES)


def corpus_counts(run: RunConfig) -> tuple[dict[str, int], str | None]:
    """Scenes, units, shards and pairs per split; the second value says what was assumed, if anything."""
    from pipeline.corpus.plan import CorpusPlanError, plan_units

    corpus = run.corpus
    try:
        units = plan_units(corpus)
    except CorpusPlanError as err:
        if not corpus.scenes.datasets or run.plan.assumed_scenes is None:
            raise
        return _assumed_counts(run), (f"dataset scenes not found here ({err}); [plan] assumed_scenes = "
                                      f"{run.plan.assumed_scenes}, val scenes = round(val_fraction x scenes)")
    counts = {"scenes": len({u.scene_id for u in units}), "units": len(units)}
    for split in ("train", "val"):
        mine = [u for u in units if u.split == split]
        counts[f"{split}_scenes"] = len({u.scene_id for u in mine})
        counts[f"{split}_pairs"] = sum(u.n_pairs for u in mine)
        counts[f"{split}_shards"] = len(mine)
    return counts, None


def _assumed_counts(run: RunConfig) -> dict[str, int]:
    corpus = run.corpus
    procedural = corpus.scenes.procedural.count if corpus.scenes.procedural is not None else 0
    scenes = procedural + len(corpus.scenes.uris) + run.plan.assumed_scenes
    val = len(corpus.val_scenes) or (max(1, round(corpus.val_fraction * scenes)) if corpus.val_fraction > 0 else 0)
    per_scene = math.ceil(corpus.pairs_per_scene / corpus.pairs_per_shard)
    counts = {"scenes": scenes, "units": scenes * per_scene}
    for split, n in (("train", scenes - val), ("val", val)):
        counts[f"{split}_scenes"] = n
        counts[f"{split}_pairs"] = n * corpus.pairs_per_scene
        counts[f"{split}_shards"] = n * per_scene
    return counts


def plan_run(run: RunConfig) -> RunPlan:
    """Every stage's counts and estimates (raises the stages' own errors for a bad config)."""
    from training.flops import TRAIN_FACTOR, binocular_forward_flops, monocular_forward_flops, pretrain_forward_flops
    from training.models.presets import preset_spec

    tflops = run.plan.gpu_tflops
    assumptions = [
        f"GPU throughput {tflops:g} TFLOP/s sustained per GPU ([plan] gpu_tflops); FLOPs = matrix multiplies "
        f"(training/flops.py), a training step = {TRAIN_FACTOR} x forward",
        f"corpus bytes: {JPEG_BYTES_PER_PIXEL} B/px per JPEG view (q95), {DEPTH_PNG_BYTES_PER_PIXEL} B/px per "
        f"uint16 depth PNG, {META_AND_TAR_BYTES} B of tar headers + meta.json per pair",
        f"rendering {run.plan.render_pairs_per_s:g} accepted pairs/s per render worker ([plan] render_pairs_per_s)",
    ]
    counts, assumed = corpus_counts(run)
    if run.evaluate is not None:
        assumptions.append("evaluate GPU-hours: backbone FLOPs of the head steps and zero-shot passes (heads not counted)")
    if assumed:
        assumptions.append(assumed)
    pairs = counts["train_pairs"] + counts["val_pairs"]
    generate = StagePlan("generate", facts=dict(counts, pairs=pairs, shards=counts["units"],
                                                 workers=run.corpus.workers, backend=run.corpus.backend))
    generate.estimates = {
        "bytes": pairs * _pair_bytes(run),
        "render_worker_hours": pairs / run.plan.render_pairs_per_s / 3600,
        "wall_hours": pairs / run.plan.render_pairs_per_s / run.corpus.workers / 3600,
    }
    stages = [generate]
    if run.pretrain is not None:
        p = run.pretrain
        spec = preset_spec(p.preset, p.crop)
        world = p.nproc
        batch = p.batch_size * p.accumulation * world
        for method in p.methods:
            step_flops = TRAIN_FACTOR * pretrain_forward_flops(method, spec, p.mask_ratio(method)) * batch
            gpu_hours = p.total_steps * step_flops / (tflops * 1e12) / 3600
            seen = p.total_steps * batch
            stages.append(StagePlan(f"pretrain {method}", facts={
                "preset": p.preset, "crop": p.crop, "optimiser_steps": p.total_steps,
                "schedule_steps": p.schedule_steps, "warmup_steps": p.warmup_steps(method), "processes": world,
                "pairs_per_step": batch, "pairs_seen": seen,
                "epochs_of_train_pairs": seen / counts["train_pairs"] if counts["train_pairs"] else float("nan"),
                "flops_per_step": step_flops,
            }, estimates={"gpu_hours": gpu_hours, "wall_hours_on_nproc_gpus": gpu_hours / world}))
        if run.evaluate is not None:
            stages.append(_evaluate_stage(run, counts, spec, tflops, monocular_forward_flops, binocular_forward_flops))
    return RunPlan(stages, assumptions)


def _evaluate_stage(run: RunConfig, counts: dict, spec, tflops: float, mono, bino) -> StagePlan:
    from evaluation.kinds import get_kind
    from evaluation.tasks import CORPUS, get_task

    cfg = run.evaluate
    if cfg.crop_size is not None and cfg.crop_size != spec.img_size:
        from training.models.presets import preset_spec

        spec = preset_spec(run.pretrain.preset, cfg.crop_size)
    val_pairs = counts["val_pairs"] if cfg.max_pairs is None else min(cfg.max_pairs, counts["val_pairs"])
    flops = 0
    for task in cfg.tasks:
        entry = get_task(task)
        forward = bino(spec) if get_kind(entry.kind).TWO_VIEW else mono(spec)
        if entry.zero_shot:
            per_seed = 2 * val_pairs * forward  # both directions / true + mismatched reference
        else:
            factor = 3 if cfg.protocol_for(task) == "finetune" else 1
            per_seed = cfg.steps * cfg.batch_size * forward * factor
        flops += per_seed * len(cfg.seeds) * len(cfg.methods)
    jobs = len(cfg.methods) * len(cfg.tasks) * len(cfg.seeds)
    return StagePlan("evaluate", facts={
        "jobs": jobs, "methods": len(cfg.methods), "tasks": ",".join(cfg.tasks), "seeds": len(cfg.seeds),
        "head_steps": cfg.steps, "val_pairs_read": val_pairs if any(get_task(t).source == CORPUS for t in cfg.tasks) else 0,
    }, estimates={"gpu_hours": flops / (tflops * 1e12) / 3600})


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    if isinstance(value, int) and abs(value) >= 10**6:
        return f"{value:,} ({value:.2e})"
    return str(value)


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def format_plan(plan: RunPlan, source: str) -> str:
    lines = [f"plan for {source} (nothing rendered or trained)", ""]
    for stage in plan.stages:
        lines.append(f"[{stage.name}]")
        lines += [f"  {k}: {_fmt(v)}" for k, v in stage.facts.items()]
        for k, v in stage.estimates.items():
            lines.append(f"  ~{k}: {_bytes(v) if k == 'bytes' else _fmt(v)} (estimate)")
        lines.append("")
    lines.append("assumptions:")
    lines += [f"  - {a}" for a in plan.assumptions]
    return "\n".join(lines)

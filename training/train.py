"""Pretraining loop: one method, one run folder, resumable, DDP when launched under torchrun.

    python -m training.train --config pretrain_config.json --method croco_v2 \
        --corpus RUN/corpus --out RUN/pretrain/croco_v2
    python -m torch.distributed.run --standalone --nproc-per-node 2 -m training.train ...

Outputs in --out: checkpoints/step-XXXXXXXX.pt (atomic, newest `keep_checkpoints` kept),
model.pt (final weights for load_backbone), metrics.jsonl (with cross_view_* fields: the
cross-view gain on held-out pairs every `cross_view_every` steps), tensorboard/, figures/,
ranks/rank-N.json (steps and samples each rank took), summary.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from rendering.processes import die_with_parent
from rendering.atomic import atomic_write_text, remove_temporary_files
from training.checkpoint import checkpoint_path, latest_valid, prune, save_atomic
from training.config import PretrainConfig
from training.pair_loader import AugmentConfig, make_loader
from training.mixture import mixture_sources
from rendering.layout import PretrainLayout
from training.cross_view import CrossViewMonitor
from training.figures import save_reconstruction
from training.jsonl import read_records
from training.methods import PRETRAINED_METHODS, get_method
from training.models import MaskedViT, build_from_spec, preset_spec

log = logging.getLogger("training.train")


# ---------------------------------------------------------------- schedule and optimiser


def peak_lr(cfg: PretrainConfig, world_size: int) -> float:
    """The linear scaling rule: base_lr x effective batch / 256."""
    return cfg.base_lr * cfg.batch_size * cfg.accumulation * world_size / 256


def lr_at(step: int, cfg: PretrainConfig, peak: float, method: str | None = None) -> float:
    """Linear warmup, then a half-cosine over the full schedule (the run stops at stop_fraction).
    `method` picks the paper's warmup when the config sets none."""
    warm = cfg.warmup_steps(method)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.schedule_steps - warm)
    return cfg.min_lr + (peak - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on 1-D parameters (norms, biases); everything else decays, the mask token
    included, as in the reference's parameter groups. Sin-cos positions are buffers, not parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over param_groups with the fused kernel (one kernel per step for all parameters, on
    CPU and CUDA alike) instead of a Python loop over parameters."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, fused=True)


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast ('auto' = bf16 on CUDA, fp32 elsewhere); CPU autocast runs the same path
    without a GPU."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_cuda_fast_math() -> None:
    """TF32 matmuls and convolutions for what runs in fp32 outside autocast (the optimiser's
    inputs, the loss), as PyTorch recommends on Ampere and later GPUs."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# ---------------------------------------------------------------- process setup


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the pretrain config asks for device 'cuda' but no CUDA GPU is available here; "
                           "set device = 'auto' or 'cpu'")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(requested_device: str) -> Dist:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; a plain process runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def mean_across_ranks(values: list[float], d: Dist) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    if d.world > 1:
        dist.all_reduce(t)
        t /= d.world
    return t.tolist()


def sum_across_ranks(values: list[float], d: Dist) -> list[float]:
    return [v * d.world for v in mean_across_ranks(values, d)]


# ---------------------------------------------------------------- checkpoint state


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng(d: Dist) -> list[dict]:
    """Every rank's RNG state (masking draws differ per rank), collected on all ranks."""
    mine = rng_state(d.device)
    if d.world == 1:
        return [mine]
    out: list = [None] * d.world
    dist.all_gather_object(out, {k: v.cpu() for k, v in mine.items()})
    return out


def restore_rng(states: list[dict], d: Dist) -> None:
    state = states[d.rank % len(states)]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and d.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], d.device)


def model_args(method: str, model: MaskedViT) -> dict:
    return {"method": method, "spec": model.spec.to_dict(), "mask_ratio": model.mask_ratio}


# ---------------------------------------------------------------- metrics


class MetricsLog:
    """metrics.jsonl (+ TensorBoard: scalars, reconstruction figures, hparams with the final loss).
    On resume, lines after the resume step are dropped so a step is never logged twice, and so is
    a partial last line a kill left."""

    def __init__(self, out: Path, resume_step: int, tensorboard: bool) -> None:
        self.path = PretrainLayout(out).metrics
        if self.path.exists():
            records, _ = read_records(self.path)
            kept = [r for r in records if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)
            except ImportError as err:
                log.warning("[pretrain] tensorboard = true but TensorBoard does not import (%s): metrics go to "
                            "metrics.jsonl only; reinstall with `pip install tensorboard` or set tensorboard = false", err)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"pretrain/{k}", v, record["step"])

    def image(self, tag: str, png: Path, step: int) -> None:
        """A figure already written as PNG (the reconstruction grid) as a TensorBoard image."""
        if self.writer is None:
            return
        import cv2

        bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
        if bgr is not None:
            self.writer.add_image(tag, bgr[:, :, ::-1].copy(), step, dataformats="HWC")

    def hparams(self, hparams: dict, final: dict) -> None:
        """The run's settings beside its final metrics (TensorBoard's HPARAMS tab)."""
        if self.writer is not None:
            self.writer.add_hparams(hparams, {f"final/{k}": v for k, v in final.items()}, run_name="hparams")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def last_metrics_record(path: Path) -> dict | None:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    return json.loads(lines[-1]) if lines else None


# ---------------------------------------------------------------- the loop


def train(
    cfg: PretrainConfig,
    method: str,
    corpus_dir: str | Path,
    out_dir: str | Path,
    fault_after_step: int | None = None,
) -> dict:
    """Train `method` until cfg.total_steps optimiser steps; resumes from out_dir if it can."""
    if not get_method(method).pretrained:
        raise ValueError(f"the {method!r} baseline is random initialisation and is not trained")
    sources = mixture_sources(cfg.corpora, corpus_dir, cfg.split)  # fail fast, before any process group exists
    shards = [shard for source in sources for shard in source.shards]
    d = setup_distributed(cfg.device)
    out = Path(out_dir)
    files = PretrainLayout(out)
    ckpt_dir = files.checkpoints
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        for path in remove_temporary_files(files.root):  # of checkpoint/model/figure writes a kill cut short
            log.info("removed %s, left by an interrupted run", path)
        files.saved_config.write_text(cfg.model_dump_json(indent=2))

    log.info("rank %d of %d on %s: %s, %d shard(s) of split %r from %s", d.rank, d.world, d.device, method,
             len(shards), cfg.split, ", ".join(f"{s.name} (weight {s.weight:g})" for s in sources))
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    spec = preset_spec(cfg.preset, cfg.crop)
    model = build_from_spec(method, spec, cfg.mask_ratio(method)).to(d.device)
    model.set_naive_attention(cfg.naive_attention)
    optimiser = make_optimizer(model, cfg.base_lr, cfg.betas, cfg.weight_decay)
    peak = peak_lr(cfg, d.world)
    torch.manual_seed(cfg.seed + 1000 * d.rank + 1)  # masking draws differ per rank

    start_step = 0
    found = latest_valid(ckpt_dir)
    if found is not None:
        path, ckpt = found
        if ckpt.get("model_args") != model_args(method, model):
            raise ValueError(f"{path} was written for {ckpt.get('model_args')}, not {model_args(method, model)}; "
                             f"use a fresh output folder or the original config")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimizer"])
        start_step = int(ckpt["step"])
        if d.main:
            log.info("resuming %s from %s (step %d)", method, path, start_step)

    if d.device.type == "cuda":
        set_cuda_fast_math()
    if cfg.compile:
        model.compile()  # the model in place, not the DDP wrapper: state_dict keys stay unprefixed
    ddp = None
    train_model: torch.nn.Module = model
    if d.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
        train_model = ddp

    aug = AugmentConfig(cfg.crop, cfg.jitter_min, cfg.jitter_max, cfg.swap_views)
    loader = make_loader(sources, aug, cfg.batch_size, cfg.seed, cfg.num_workers,
                         cfg.shuffle_buffer, skip_batches=start_step * cfg.accumulation,
                         pin_memory=d.device.type == "cuda")
    batches = iter(loader)  # creating the iterator draws from the RNG: restore it afterwards
    if found is not None:
        restore_rng(found[1]["rng"], d)
    metrics = MetricsLog(out, start_step, cfg.tensorboard) if d.main else None
    cross_view = (CrossViewMonitor(corpus_dir, model, cfg.crop, cfg.cross_view_pairs, cfg.seed)
                  if d.main and cfg.cross_view_every > 0 else None)
    autocast = precision_context(cfg.precision, d.device)

    def save(step: int) -> None:
        rng = gather_rng(d)  # collective: every rank calls it
        if d.main:
            state = {
                "model": model.state_dict(),
                "optimizer": optimiser.state_dict(),
                "scheduler": {"name": "warmup_half_cosine", "peak_lr": peak, "step": step},
                "step": step,
                "epoch": step // cfg.steps_per_epoch,
                "rng": rng,
                "config": cfg.model_dump(mode="json"),
                "model_args": model_args(method, model),
                "world_size": d.world,
            }
            save_atomic(state, checkpoint_path(ckpt_dir, step))
            prune(ckpt_dir, cfg.keep_checkpoints)
        if d.world > 1:
            dist.barrier()

    total = cfg.total_steps
    samples_seen = 0
    bad_total = 0
    by_source = [0] * len(sources)  # samples this rank took from each corpus of the mixture
    # losses are summed on the device and read back once per log line or checkpoint, so the
    # step loop never waits for the device
    window_loss = torch.zeros((), device=d.device)
    window_steps, window_first, window_t0 = 0, start_step + 1, time.perf_counter()

    def window_mean(done: int) -> float:
        value = float(window_loss) / max(1, window_steps)
        if not math.isfinite(value):
            raise FloatingPointError(f"{method}: loss is {value} in steps {window_first}-{done} (rank {d.rank})")
        return value

    train_model.train()
    for step in range(start_step, total):
        lr = lr_at(step, cfg, peak, method)
        for group in optimiser.param_groups:
            group["lr"] = lr
        for micro in range(cfg.accumulation):
            batch = next(batches)
            bad_total += int(batch["bad"])
            by_source = [n + int(c) for n, c in zip(by_source, batch["source_counts"].tolist())]
            img1 = batch["img1"].to(d.device, non_blocking=True)
            img2 = batch["img2"].to(d.device, non_blocking=True)
            sync = ddp is None or micro == cfg.accumulation - 1
            ctx = contextlib.nullcontext() if sync else ddp.no_sync()  # all-reduce once per step
            with ctx:
                with autocast:
                    result = train_model(img1, img2)
                (result.loss / cfg.accumulation).backward()
            window_loss += result.loss.detach().float() / cfg.accumulation
            samples_seen += img1.shape[0]
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        done = step + 1
        window_steps += 1
        logging_now = done % cfg.log_every == 0 or done == total
        if logging_now or done % cfg.checkpoint_every == 0:
            window_value = window_mean(done)  # a non-finite loss stops the run before any checkpoint

        if logging_now:
            loss, bad = mean_across_ranks([window_value], d)[0], sum_across_ranks([bad_total], d)[0]
            source_totals = [int(round(v)) for v in sum_across_ranks([float(n) for n in by_source], d)]
            elapsed = time.perf_counter() - window_t0
            pairs = window_steps * cfg.batch_size * cfg.accumulation * d.world
            if metrics is not None:
                record = {"step": done, "epoch": done / cfg.steps_per_epoch, "loss": loss, "lr": lr,
                          "pairs_per_s": pairs / max(elapsed, 1e-9), "bad_samples": int(round(bad)),
                          "samples_by_source": dict(zip((s.name for s in sources), source_totals))}
                if cross_view is not None and (done % cfg.cross_view_every == 0 or done == total):
                    record.update(cross_view.measure(model) or {})  # held-out pairs: true vs mismatched view 2
                metrics.write(record)
                log.info("%s step %d/%d loss %.4f lr %.2e %.1f pairs/s", method, done, total, loss, lr,
                         pairs / max(elapsed, 1e-9))
            window_loss.zero_()
            window_steps, window_first, window_t0 = 0, done + 1, time.perf_counter()
        if d.main and (done % cfg.figure_every == 0 or done == total):
            figure = save_reconstruction(files.figures / f"recon-{done:08d}.png", img1, img2, result, spec.patch_size,
                                         title=f"{method}, step {done}/{total}, loss {float(result.loss.detach()):.4f}",
                                         uses_reference=get_method(method).pretrains_on == "pairs")
            if metrics is not None:
                metrics.image("pretrain/reconstruction", figure, done)
        if done % cfg.checkpoint_every == 0 or done == total:
            save(done)
            if fault_after_step is not None and done == fault_after_step:
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection for resume tests

    rank_record = {"rank": d.rank, "world_size": d.world, "start_step": start_step, "end_step": total,
                   "steps_taken": max(0, total - start_step), "samples_seen": samples_seen, "bad_samples": bad_total,
                   "samples_by_source": dict(zip((s.name for s in sources), by_source)),
                   "source_weights": {s.name: s.weight for s in sources}}
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    (out / "ranks" / f"rank-{d.rank}.json").write_text(json.dumps(rank_record))
    summary = {"method": method, "steps": total, "resumed_from": start_step, "world_size": d.world,
               "device": str(d.device), "peak_lr": peak}
    if d.main:
        save_atomic({"model": model.state_dict(), "model_args": model_args(method, model), "step": total,
                     "config": cfg.model_dump(mode="json")}, files.weights)
        files.summary.write_text(json.dumps(summary, indent=2))
        if metrics is not None:
            last = last_metrics_record(files.metrics)
            metrics.hparams({"method": method, "preset": cfg.preset, "batch_size": cfg.batch_size,
                             "peak_lr": float(peak), "steps": total, "crop": cfg.crop},
                            {"loss": float(last["loss"])} if last else {})
            metrics.close()
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


# ---------------------------------------------------------------- command line


def load_config(path: Path) -> PretrainConfig:
    """A JSON PretrainConfig, or a run TOML whose [pretrain] section is one."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrain config not found: {path}")
    if path.suffix == ".toml":
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        return PretrainConfig.model_validate(data.get("pretrain", data))
    return PretrainConfig.model_validate_json(path.read_text())


def main(argv: list[str] | None = None) -> int:
    launcher = os.getppid()  # first thing: the agent that started us, before it could be gone
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="PretrainConfig JSON or run TOML")
    parser.add_argument("--method", required=True, choices=PRETRAINED_METHODS)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (holds manifest.parquet)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for this method")
    parser.add_argument("--fault-after-step", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # torchrun starts trainers in a new session: a kill of the command's process group misses
        # them, so each trainer dies with its torchrun agent instead (rendering/processes.py).
        die_with_parent(launcher)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    train(load_config(args.config), args.method, args.corpus, args.out, args.fault_after_step)
    return 0


if __name__ == "__main__":
    # torchrun records an uncaught exception in TORCHELASTIC_ERROR_FILE when the entry point is
    # wrapped with @record; that file is how the launcher shows the failing rank's traceback.
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())

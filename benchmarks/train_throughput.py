"""Training throughput (pairs/s) per preset: fused scaled_dot_product_attention vs naive attention.

Times full optimiser steps (forward, backward, AdamW) on random batches, so the figure is the
model's cost alone; `--loader` adds the data pipeline's own pairs/s on a synthetic 256 px corpus.
Run under torchrun for DDP figures (gloo on CPU, NCCL on GPU):

    python benchmarks/train_throughput.py --presets tiny base
    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/train_throughput.py --presets tiny
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist

from training.data import AugmentConfig, make_loader
from training.models import build_model
from training.synthetic import write_synthetic_corpus


def model_flops_per_pair(model) -> float:
    """Matmul FLOPs of one training pair (forward x3 for forward+backward), CroCo masking."""
    s = model.spec
    n = model.patch_embed.num_patches
    vis = n - int(round(model.mask_ratio * n))
    enc_tokens = vis + n  # masked view 1 + full view 2

    def vit(tokens: int, d: int, kv: int | None = None) -> float:
        kv = tokens if kv is None else kv
        return 2 * tokens * (12 * d * d) + 2 * 2 * tokens * kv * d

    f = 2 * 2 * n * 3 * s.patch_size**2 * s.enc_dim  # patch embedding of both views
    f += s.enc_depth * (vit(vis, s.enc_dim) + vit(n, s.enc_dim))
    d = s.dec_dim
    cross = 2 * n * 2 * d * d + 2 * n * 2 * d * d + 2 * 2 * n * n * d  # q,proj on n; k,v on n; scores
    f += s.dec_depth * (vit(n, d) + cross)
    f += 2 * n * d * s.patch_size**2 * 3
    return 3 * f


def time_steps(preset: str, naive: bool, batch: int, steps: int, warmup: int, device: torch.device, world: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model("croco_v2", preset).to(device)
    model.set_naive_attention(naive)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    size = model.spec.img_size
    x1, x2 = torch.randn(batch, 3, size, size, device=device), torch.randn(batch, 3, size, size, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast:
            loss = net(x1, x2).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return batch * world / step, model_flops_per_pair(model)


def loader_rate(crop: int, batch: int, batches: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        shards = [str(p) for p in write_synthetic_corpus(tmp, shards=2, pairs_per_shard=64, size=256)]
        it = iter(make_loader(shards, AugmentConfig(crop), batch, seed=0, num_workers=workers, shuffle_buffer=32))
        next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "base"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--loader", action="store_true", help="also measure the data pipeline")
    args = ap.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        print(f"device {device}, processes {world}, torch threads/process {torch.get_num_threads()}, batch/process {args.batch}")
        print("| preset | attention | pairs/s | GFLOP/pair | GFLOP/s |")
        print("|---|---|---|---|---|")
    for preset in args.presets:
        rates = {}
        for naive in (False, True):
            rate, flops = time_steps(preset, naive, args.batch, args.steps, args.warmup, device, world)
            rates[naive] = rate
            if main_rank:
                name = "naive" if naive else "fused SDPA"
                print(f"| {preset} | {name} | {rate:.2f} | {flops / 1e9:.2f} | {rate * flops / 1e9:.1f} |", flush=True)
        if main_rank:
            print(f"| {preset} | fused/naive | {rates[False] / rates[True]:.2f}x | | |", flush=True)
    if args.loader and main_rank:
        for preset, crop in (("tiny", 112), ("base", 224)):
            print(f"loader {preset} ({crop} px crops from 256 px JPEG), 0 workers: "
                  f"{loader_rate(crop, args.batch, 20, 0):.1f} pairs/s", flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

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

from training.pair_loader import AugmentConfig, make_loader
from training.flops import TRAIN_FACTOR, pretrain_forward_flops
from training.models import build_model
from training.synthetic import write_synthetic_corpus


class Runner:
    """One model + optimiser + fixed batch; `time(k)` returns the median seconds of k steps."""

    def __init__(self, preset: str, naive: bool, batch: int, device: torch.device, world: int) -> None:
        torch.manual_seed(0)
        self.model = build_model("croco_v2", preset).to(device)
        self.model.set_naive_attention(naive)
        self.net = torch.nn.parallel.DistributedDataParallel(self.model) if world > 1 else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
        size = self.model.spec.img_size
        self.x1 = torch.randn(batch, 3, size, size, device=device)
        self.x2 = torch.randn(batch, 3, size, size, device=device)
        self.device = device

    def time(self, k: int) -> list[float]:
        times = []
        for _ in range(k):
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss = self.net(self.x1, self.x2).loss
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return times


def compare(preset: str, batch: int, steps: int, rounds: int, device: torch.device, world: int) -> dict:
    """Fused and naive attention measured in alternating rounds, so load changes hit both alike."""
    runners = {naive: Runner(preset, naive, batch, device, world) for naive in (False, True)}
    for r in runners.values():
        r.time(1)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for naive, r in runners.items():
            times[naive] += r.time(steps)
    return {naive: batch * world / statistics.median(t) for naive, t in times.items()} | {
        "flops": TRAIN_FACTOR * pretrain_forward_flops("croco_v2", runners[False].model.spec,
                                                        runners[False].model.mask_ratio)}


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
    ap.add_argument("--steps", type=int, default=2, help="steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating fused/naive rounds")
    ap.add_argument("--loader", action="store_true", help="also measure the data pipeline")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        res = compare(preset, args.batch, args.steps, args.rounds, device, world)
        if main_rank:
            for naive, name in ((False, "fused SDPA"), (True, "naive")):
                rate = res[naive]
                print(f"| {preset} | {name} | {rate:.2f} | {res['flops'] / 1e9:.2f} | {rate * res['flops'] / 1e9:.1f} |")
            print(f"| {preset} | fused/naive | {res[False] / res[True]:.2f}x | | |", flush=True)
    if args.loader and main_rank:
        for preset, crop in (("tiny", 112), ("base", 224)):
            print(f"loader {preset} ({crop} px crops from 256 px JPEG), 0 workers: "
                  f"{loader_rate(crop, args.batch, 20, 0):.1f} pairs/s", flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Training step throughput of today's model code against a frozen earlier commit, in one process.

The baseline is commit 82d4146's training/models (read from git and imported under another
module name) with its naive attention path, which ran at 0.99-1.05x of the public CroCo model code
at equal configs. Both models get the same weights and batches; full optimiser steps (forward,
backward, AdamW) are timed in alternating rounds so that load changes on a shared machine hit
both alike. Before timing, the two losses and gradients are compared (fp32).

    python benchmarks/train_speedup.py                              # tiny + small, cosine + RoPE, eager
    python benchmarks/train_speedup.py --modes eager compiled --threads 1 2

`compiled` runs torch.compile on today's model and compares it with the baseline in eager mode
(the baseline's own speed) and, with --compile-baseline, with the baseline compiled as well.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.models import build_model  # noqa: E402
from training.models.loading import load_state  # noqa: E402
from training.train import make_optimizer  # noqa: E402

BASELINE_COMMIT = "82d4146"
METHOD_OF_POS = {"cosine": "croco_v1", "rope": "croco_v2"}


def import_frozen_models(commit: str, into: Path) -> ModuleType:
    """training/models as of `commit`, importable as `frozen_models_<commit>`."""
    alias = f"frozen_models_{commit}"
    files = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", f"{commit}:training/models"],
                           check=True, capture_output=True, text=True).stdout.split()
    package = into / alias
    package.mkdir(parents=True, exist_ok=True)
    for name in files:
        if name.endswith(".py"):
            text = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:training/models/{name}"],
                                  check=True, capture_output=True, text=True).stdout
            (package / name).write_text(text.replace("training.models.", f"{alias}."))
    sys.path.insert(0, str(into))
    return importlib.import_module(alias)


class Side:
    """One model + optimiser + fixed batch; `time(k)` returns the seconds of each of k steps."""

    def __init__(self, model: torch.nn.Module, optimiser: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
                 compiled: bool, compile_mode: str | None = None) -> None:
        self.model = model
        self.net = torch.compile(model, mode=compile_mode) if compiled else model
        self.opt = optimiser
        self.x1, self.x2 = x1, x2

    def step(self) -> torch.Tensor:
        loss = self.net(self.x1, self.x2).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss

    def time(self, k: int, clock=time.perf_counter) -> list[float]:
        out = []
        for _ in range(k):
            t0 = clock()
            self.step()
            out.append(clock() - t0)
        return out


def numerics(old: torch.nn.Module, new: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> tuple[float, float]:
    """(relative loss difference, largest relative gradient difference) with the same mask draw
    (the same masks only where both commits count them alike, as on the 14x14 grids of tiny/small)."""
    grads = []
    losses = []
    for model in (old, new):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        loss = model(x1, x2).loss
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.zero_grad(set_to_none=True)
    new_grads = grads[1]  # same parameter names: the checkpoint layout did not change
    # norm-relative per tensor; the cross-attention key bias has a zero gradient in exact
    # arithmetic (softmax ignores a shift shared by all keys), so it holds only rounding noise
    floor = 1e-6 * max(float(g.norm()) for g in grads[0].values())
    worst, worst_name = 0.0, ""
    for name, g in grads[0].items():
        if name.endswith("projk.bias"):
            continue
        diff = float((g - new_grads[name]).norm()) / max(float(g.norm()), floor)
        if diff > worst:
            worst, worst_name = diff, name
    if worst > 1e-4:
        print(f"  largest gradient difference in {worst_name}: {worst:.1e}", flush=True)
    return abs(losses[0] - losses[1]) / abs(losses[0]), worst


def compare(frozen: ModuleType, preset: str, pos: str, mode: str, batch: int, steps: int, rounds: int,
            compile_baseline: bool, compile_mode: str | None = None) -> dict:
    method = METHOD_OF_POS[pos]
    torch.manual_seed(0)
    old = frozen.build_model(method, preset)
    old.set_naive_attention(True)
    new = build_model(method, preset)
    load_state(new, old.state_dict())
    size = new.spec.img_size
    x1, x2 = torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)
    loss_diff, grad_diff = numerics(old, new, x1, x2)
    old_opt = torch.optim.AdamW(old.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)  # as 82d4146
    sides = {"baseline": Side(old, old_opt, x1, x2, compiled=False),
             "new": Side(new, make_optimizer(new, 1e-4, (0.9, 0.95), 0.05), x1, x2, compiled=mode == "compiled",
                         compile_mode=compile_mode)}
    if mode == "compiled" and compile_baseline:
        torch.manual_seed(0)
        old_c = frozen.build_model(method, preset)
        old_c.set_naive_attention(True)
        sides["baseline compiled"] = Side(old_c, torch.optim.AdamW(old_c.parameters(), lr=1e-4), x1, x2, compiled=True,
                                          compile_mode=compile_mode)
    warm_s = {}
    for name, side in sides.items():
        t0 = time.perf_counter()
        side.time(2)  # warm-up (and compilation)
        warm_s[name] = time.perf_counter() - t0
    # one thread: the process's CPU time, which other processes on a loaded machine do not inflate
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            times[name] += side.time(steps, clock)
    rate = {k: batch / statistics.median(v) for k, v in times.items()}
    return {"rate": rate, "loss_diff": loss_diff, "grad_diff": grad_diff, "warm_s": warm_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--pos", nargs="+", default=["cosine", "rope"], choices=["cosine", "rope"])
    ap.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compiled"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2, help="steps per side per round")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    ap.add_argument("--compile-baseline", action="store_true", help="also time the baseline under torch.compile")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    ap.add_argument("--commit", default=BASELINE_COMMIT, help="baseline commit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        frozen = import_frozen_models(args.commit, Path(tmp))
        print(f"baseline: training/models at {args.commit}, naive attention; batch {args.batch}, "
              f"{args.rounds} rounds x {args.steps} steps per side; median step time "
              "(CPU time of the process with 1 thread, wall time with more)")
        print("| preset | pos | mode | threads | baseline pairs/s | new pairs/s | new/baseline | loss rel diff | "
              "grad rel diff |")
        print("|---|---|---|---|---|---|---|---|---|")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for preset in args.presets:
                for pos in args.pos:
                    for mode in args.modes:
                        r = compare(frozen, preset, pos, mode, args.batch, args.steps, args.rounds,
                                    args.compile_baseline, args.compile_mode)
                        base, new = r["rate"]["baseline"], r["rate"]["new"]
                        extra = f" warm-up (with compilation) {r['warm_s']['new']:.0f} s" if mode == "compiled" else ""
                        if "baseline compiled" in r["rate"]:
                            bc = r["rate"]["baseline compiled"]
                            extra += f" (baseline compiled {bc:.2f} pairs/s: new/that {new / bc:.2f}x)"
                        print(f"| {preset} | {pos} | {mode} | {threads} | {base:.2f} | {new:.2f} | {new / base:.2f}x | "
                              f"{r['loss_diff']:.1e} | {r['grad_diff']:.1e} |{extra}", flush=True)


if __name__ == "__main__":
    main()

"""Training step time with 1 OpenMP thread, 2 spinning threads and 2 sleeping threads.

Each setting runs in its own subprocess (the OpenMP runtime reads its environment at start):
the tiny preset (croco_v2, 112 px, batch 8, fused AdamW), 2 warm-up steps, then --steps timed
optimiser steps. Settings alternate round by round, so load changes on a shared machine hit
them alike; run it on an idle machine and under load to see what the wait policy costs and saves.

    python benchmarks/omp_wait_policy.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = r'''
import json, sys, time, torch
from training.models import build_model
from training.train import make_optimizer
torch.manual_seed(0)
model = build_model("croco_v2", "tiny")
opt = make_optimizer(model, 1e-4, (0.9, 0.95), 0.05)
x1, x2 = torch.randn(8, 3, 112, 112), torch.randn(8, 3, 112, 112)
def step():
    opt.zero_grad(set_to_none=True)
    model(x1, x2).loss.backward()
    opt.step()
step(); step()
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    step()
print(json.dumps((time.perf_counter() - start) / int(sys.argv[1])))
'''
SETTINGS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads, spin (default policy)": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": ""},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for round_index in range(args.rounds):
        for name, setting in SETTINGS.items():
            env = {**os.environ, "PYTHONPATH": str(REPO), **setting}
            env = {k: v for k, v in env.items() if v != ""}  # "" = the variable unset
            done = subprocess.run([sys.executable, "-c", STEPS, str(args.steps)], env=env, capture_output=True,
                                  text=True, check=True)
            seconds[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_index} {name}: {seconds[name][-1]:.3f} s/step, load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    for name, values in seconds.items():
        print(f"{name:<36} median {statistics.median(values):.3f} s/step "
              f"({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()

"""Quickstart-preset training steps with OMP threads 1 vs 2 (and 2 passive), alternating subprocesses."""
import os, subprocess, sys, statistics, json
CHILD = r'''
import time, torch, json
from training.models import build_model
m = build_model("croco_v2", "tiny")
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
x1 = torch.randn(8, 3, 112, 112); x2 = torch.randn(8, 3, 112, 112)
def step():
    out = m(x1, x2)
    loss = out.loss
    opt.zero_grad(); loss.backward(); opt.step()
step(); step()
t = time.perf_counter()
for _ in range(8): step()
print(json.dumps((time.perf_counter() - t) / 8))
'''
cases = {"1 thread": {"OMP_NUM_THREADS": "1"}, "2 threads": {"OMP_NUM_THREADS": "2"},
         "2 threads passive": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}}
res = {k: [] for k in cases}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    for name, extra in cases.items():
        out = subprocess.run([sys.executable, "-c", CHILD], env={**os.environ, **extra}, capture_output=True, text=True)
        if out.returncode: print(out.stderr[-2000:]); sys.exit(1)
        res[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(r, name, f"{res[name][-1]*1000:.0f} ms/step", "load", os.getloadavg()[0], flush=True)
for name, v in res.items():
    print(f"{name}: median {statistics.median(v)*1000:.0f} ms/step")

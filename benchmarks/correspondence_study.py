"""The correspondence study over pretraining seeds: one corpus, one pretraining run per seed.

    python benchmarks/correspondence_study.py configs/study_cpu_correspondence.toml --pretrain-seeds 0 1 2
    python benchmarks/correspondence_study.py CONFIG --pretrain-seeds 0 1 --steps-per-epoch 25 \
        --tasks correspondence cross_view_gain            # a cheaper slice

The corpus is generated once (`crocopipe generate CONFIG`, into the config's run_dir). Seed k
then gets its own run folder ``<run_dir>-seed<k>`` (holding that folder's lock) whose corpus is a
link to the shared one; every method of [pretrain] is trained with ``seed = k`` and evaluated
with evaluation seed k (so the random-init baseline is a new network per seed too). Prints, per
method and metric, the mean and standard deviation over the seeds, and writes the same as JSON to
``<run_dir>-study.json``. Correspondence is deterministic given the weights, so its spread here is
the pretraining seed's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _seed_run(run, seed: int, steps_per_epoch: int | None, tasks: list[str] | None):
    """The run config of pretraining seed ``seed``: own run folder, same corpus settings."""
    pretrain = run.pretrain.model_copy(update={"seed": seed, **({"steps_per_epoch": steps_per_epoch} if steps_per_epoch else {})})
    evaluate = run.evaluate.model_copy(update={"seeds": [seed], **({"tasks": tasks} if tasks else {})})
    out = run.model_copy(update={"run_dir": Path(f"{run.run_dir}-seed{seed}"), "pretrain": pretrain, "evaluate": evaluate})
    out._source = run.source
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="override [pretrain] steps_per_epoch")
    parser.add_argument("--tasks", nargs="+", default=None, help="override [evaluate] tasks")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from evaluation.jobs import run_job
    from evaluation.plan import plan_jobs
    from evaluation.tables import TASK_METRICS, write_tables
    from pipeline.run_lock import RunLock
    from pipeline.resolved import resolve_evaluation
    from pipeline.config import load_run_config
    from training.launch import is_complete
    from training.train import train

    torch.set_num_threads(args.threads)
    base = load_run_config(args.config)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", str(args.config)], check=True,
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    timings = {"generate_s": round(time.perf_counter() - t0, 1)}
    per_seed: dict[int, dict] = {}
    for seed in args.pretrain_seeds:
        run = _seed_run(base, seed, args.steps_per_epoch, args.tasks)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run.run_dir, purpose="correspondence-study").acquire()
        try:
            link = run.layout.corpus_dir
            if not link.exists():
                link.symlink_to(base.layout.corpus_dir.resolve(), target_is_directory=True)
            t1 = time.perf_counter()
            for method in run.pretrain.methods:
                out = run.layout.pretrain(method).root
                if not is_complete(out, run.pretrain):
                    train(run.pretrain, method, run.layout.corpus_dir, out)
            timings[f"seed{seed}_pretrain_s"] = round(time.perf_counter() - t1, 1)
            t1 = time.perf_counter()
            evaluation = resolve_evaluation(run)
            cfg, spec = evaluation.config, evaluation.spec
            for job in plan_jobs(run.layout, cfg):
                run_job(job, str(run.layout.corpus_dir), cfg, spec)
            write_tables(run.layout.root, list(cfg.methods), list(cfg.tasks), list(cfg.seeds),
                         {"protocol": cfg.protocol, "steps": cfg.steps})
            timings[f"seed{seed}_evaluate_s"] = round(time.perf_counter() - t1, 1)
            per_seed[seed] = {
                (m, t): json.loads(run.layout.result(m, t, seed).read_text())["metrics"]
                for m in cfg.methods for t in cfg.tasks
            }
        finally:
            lock.release()

    summary = {"config": str(args.config), "pretrain_seeds": args.pretrain_seeds, "timings": timings, "metrics": {}}
    lines = ["| method | task | metric | mean | std | per seed |", "|---|---|---|---|---|---|"]
    for (m, t) in per_seed[args.pretrain_seeds[0]]:
        for key, label, scale in TASK_METRICS[t]:
            values = [per_seed[s][(m, t)].get(key) for s in args.pretrain_seeds]
            if any(v is None for v in values):
                lines.append(f"| {m} | {t} | {label} | n/a | | |")
                continue
            arr = np.asarray(values, dtype=float) * scale
            std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
            summary["metrics"][f"{m}/{t}/{key}"] = {"mean": float(arr.mean()), "std": std, "values": arr.tolist()}
            lines.append(f"| {m} | {t} | {label} | {arr.mean():.3f} | {std:.3f} | "
                         + " / ".join(f"{v:.3f}" for v in arr) + " |")
    out = Path(f"{base.run_dir}-study.json")
    out.write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))
    print(json.dumps(timings))
    print(f"summary: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Head training on a frozen backbone's tokens computed once vs the backbone run on every step.

    python benchmarks/eval_frozen_tokens.py configs/quickstart.toml --rounds 2 --threads 2

Needs the run's corpus and pretraining checkpoints (``crocopipe run CONFIG`` or its generate and
pretrain stages). For every (method, head task) of the config's evaluation with seed 0, runs the
evaluate job's own ``run_one`` twice per round, alternating: with the token cache and with it
switched off (``TOKEN_CACHE_BYTES = 0``). Prints seconds per job and per mode, the ratio, and the
largest relative difference of a metric between the two modes. Writes no result file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    parser.add_argument("--methods", nargs="*", default=None)
    args = parser.parse_args()

    import torch

    import evaluation.runner as runner
    from evaluation.jobs import task_data
    from evaluation.kinds import HEAD_KINDS
    from evaluation.plan import plan_jobs
    from evaluation.tasks import CORPUS, get_task
    from pipeline.resolved import resolve_run
    from training.models import ModelSpec

    run = resolve_run(args.config, evaluate=True, methods=args.methods)
    cfg, spec = run.evaluation.config, run.evaluation.spec
    if args.threads is not None:
        cfg = cfg.model_copy(update={"threads": args.threads})
    jobs = [j for j in plan_jobs(run.layout, cfg) if j.seed == cfg.seeds[0] and get_task(j.task).kind in HEAD_KINDS
            and get_task(j.task).source == CORPUS]
    default_limit = runner.TOKEN_CACHE_BYTES
    seconds: dict[str, list[float]] = {"tokens": [], "images": []}
    worst = 0.0
    print(f"{len(jobs)} jobs, threads {cfg.threads}, torch threads {torch.get_num_threads()}")
    for round_ in range(args.rounds):
        for job in jobs:
            train, test, _, _ = task_data(str(run.layout.corpus_dir), job.task, spec["img_size"], cfg.max_pairs,
                                          cfg.test_fraction)
            results = {}
            order = ("tokens", "images") if round_ % 2 == 0 else ("images", "tokens")
            for mode in order:
                runner.TOKEN_CACHE_BYTES = default_limit if mode == "tokens" else 0
                backbone = runner.load_method_backbone(
                    job.method, None if job.checkpoint is None else Path(job.checkpoint), ModelSpec(**spec), job.seed)
                started = time.perf_counter()
                results[mode] = runner.run_one(job.task, job.method, backbone, train, test, cfg, job.seed)
                results[mode]["wall"] = time.perf_counter() - started
            for mode, result in results.items():
                seconds[mode].append(result["wall"])
            diffs = [abs(results["tokens"]["metrics"][k] - v) / max(abs(v), 1e-6)
                     for k, v in results["images"]["metrics"].items() if isinstance(v, float)]
            worst = max([worst, *diffs])
            print(f"round {round_} {job.method:9s} {job.task:6s} cached={results['tokens']['frozen_tokens']!s:5s} "
                  f"tokens {results['tokens']['wall']:6.2f} s  images {results['images']['wall']:6.2f} s  "
                  f"ratio {results['images']['wall'] / results['tokens']['wall']:.2f}x", flush=True)
    runner.TOKEN_CACHE_BYTES = default_limit
    total = {mode: sum(v) for mode, v in seconds.items()}
    per_job = [b / a for a, b in zip(seconds["tokens"], seconds["images"])]
    print(f"total tokens {total['tokens']:.1f} s, images {total['images']:.1f} s: "
          f"{total['images'] / total['tokens']:.2f}x faster with tokens (median per job {statistics.median(per_job):.2f}x); "
          f"largest relative metric difference {worst:.2e}")


if __name__ == "__main__":
    main()

"""Accepted pairs per second of the pair sampler, per process and with several processes.

Each worker process (spawned, one GL context each) loads the scenes and samples its own share of
pair indices; throughput = accepted pairs / the slowest worker's sampling time (scene loading is
reported separately). Also reports CPU time per accepted pair (all threads of the worker: a
load-independent cost; an idle core delivers about 1000 / that many pairs/s), rendered views and
candidate poses per accepted pair. Render processes set llvmpipe's threads as the generate flow
does (pipeline.corpus.unit.configure_render_process) unless --lp-threads says otherwise.

    python benchmarks/pairs_per_second.py --scenes procedural:0 procedural:1 --pairs 40 --workers 1 2
    python benchmarks/pairs_per_second.py --workers 2 --baseline /path/to/older/checkout   # ratio, alternating
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections import Counter


def _worker(job: dict) -> dict:
    if job["lp_threads"] == "auto":  # what the generate flow's render processes do
        from pipeline.corpus.unit import configure_render_process

        configure_render_process(job["workers"])
    elif job["lp_threads"] != "default":
        os.environ["LP_NUM_THREADS"] = job["lp_threads"]
    from rendering.backend import SceneSpec
    from rendering.backends import create_renderer
    from rendering.sampling import PairSamplingError, SamplerConfig, sample_pair

    config = SamplerConfig(**job["config"])
    renderer = create_renderer(job["backend"])
    load_s = 0.0
    sample_s = 0.0
    cpu_s = 0.0  # all threads of the process (llvmpipe rasterises on its own threads)
    accepted = 0
    failed = 0
    attempts = 0
    rejections: Counter[str] = Counter()
    try:
        for scene_index, uri in enumerate(job["scenes"]):
            scene = SceneSpec(f"scene-{scene_index}", uri)
            start = time.perf_counter()
            navigable = renderer.load_scene(scene)
            load_s += time.perf_counter() - start
            start = time.perf_counter()
            cpu_start = time.process_time()
            for pair_index in job["indices"]:
                try:
                    record = sample_pair(renderer, navigable, scene, pair_index, job["seed"], config)
                except PairSamplingError as err:
                    failed += 1
                    attempts += err.attempts
                    rejections.update(err.rejections)
                    continue
                accepted += 1
                attempts += record.attempts
                rejections.update(record.rejections)
            sample_s += time.perf_counter() - start
            cpu_s += time.process_time() - cpu_start
    finally:
        renderer.close()
    return {"accepted": accepted, "failed": failed, "attempts": attempts, "rejections": dict(rejections),
            "load_s": load_s, "sample_s": sample_s, "cpu_s": cpu_s}


def run(scenes: list[str], pairs: int, workers: int, config: dict, seed: int, backend: str,
        lp_threads: str = "auto") -> dict:
    jobs = [
        {"scenes": scenes, "indices": list(range(w, pairs, workers)), "config": config, "seed": seed,
         "backend": backend, "workers": workers, "lp_threads": lp_threads}
        for w in range(workers)
    ]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_worker, jobs)
    accepted = sum(r["accepted"] for r in results)
    rejections: Counter[str] = Counter()
    for r in results:
        rejections.update(r["rejections"])
    rendered = sum(r["attempts"] for r in results)
    prechecked = sum(v for k, v in rejections.items() if k == "frustum_below_min" or k.startswith("screen_"))
    return {
        "workers": workers,
        "accepted": accepted,
        "failed": sum(r["failed"] for r in results),
        "pairs_per_s": accepted / max(r["sample_s"] for r in results),
        "cpu_ms_per_pair": 1e3 * sum(r["cpu_s"] for r in results) / max(accepted, 1),
        "views_per_pair": rendered / max(accepted, 1),
        "poses_per_pair": (rendered + prechecked) / max(accepted, 1),
        "load_s_per_scene": max(r["load_s"] for r in results) / len(scenes),
        "rejections": dict(sorted(rejections.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="+", default=["procedural:0", "procedural:1"])
    parser.add_argument("--pairs", type=int, default=40, help="pairs per scene")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="embedded")
    parser.add_argument("--covis-method", default="reprojection")
    parser.add_argument("--screen-size", type=int, default=64, help="low-resolution screening width (0: off)")
    parser.add_argument("--max-candidates", type=int, default=100, help="candidates per reference view")
    parser.add_argument("--no-precheck", action="store_true", help="render every candidate (frustum_precheck off)")
    parser.add_argument("--blas-threads", default="1", help="OPENBLAS/OMP threads per worker process")
    parser.add_argument("--lp-threads", default="auto",
                        help="llvmpipe threads per worker: 'auto' (the generate flow's choice), 'default' (Mesa's), or N")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run this script of another checkout of the project (e.g. a git worktree of an "
                        "older commit), alternating with this one, and print CPU ms/pair ratios")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --baseline")
    args = parser.parse_args()
    if args.baseline:
        compare_with_baseline(args)
        return

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = args.blas_threads  # inherited by the spawned workers
    config = {"width": args.size, "height": args.size, "covis_method": args.covis_method,
              "frustum_precheck": not args.no_precheck, "screen_size": args.screen_size,
              "max_candidates_per_reference": args.max_candidates}
    print(f"scenes {args.scenes}, {args.pairs} pairs each, {args.size}x{args.size}, {args.covis_method}, "
          f"screen {args.screen_size or 'off'}, precheck {'off' if args.no_precheck else 'on'}, "
          f"max candidates/reference {args.max_candidates}, llvmpipe threads {args.lp_threads}, cpu count {os.cpu_count()}")
    for workers in args.workers:
        r = run(args.scenes, args.pairs, workers, config, args.seed, args.backend, args.lp_threads)
        print(f"workers {workers}: {r['pairs_per_s']:.1f} accepted pairs/s ({r['accepted']} accepted, "
              f"{r['failed']} failed); CPU {r['cpu_ms_per_pair']:.1f} ms/pair (all threads); rendered views/pair {r['views_per_pair']:.2f}, candidate poses/pair "
              f"{r['poses_per_pair']:.2f}; scene load {r['load_s_per_scene']:.2f} s/scene; rejections {r['rejections']}")


# The renderer-only cost of an accepted pair: two full 256-px frames (~5.6 CPU ms each on llvmpipe)
# and ~14 screened candidates at 64 px (~0.85 ms each), measured on the idle 2-core machine.
FLOOR_CPU_MS_256 = 2 * 5.6 + 14 * 0.85


def compare_with_baseline(args: argparse.Namespace) -> None:
    """Alternate this checkout's sampler with the baseline checkout's, same arguments, and print
    the median CPU ms per accepted pair of each, their ratio, and the distance to the floor."""
    import re
    import statistics
    import subprocess
    import sys
    from pathlib import Path

    shared = ["--scenes", *args.scenes, "--pairs", str(args.pairs), "--size", str(args.size),
              "--seed", str(args.seed), "--screen-size", str(args.screen_size),
              "--max-candidates", str(args.max_candidates), "--blas-threads", args.blas_threads]
    checkouts = {"this": Path(__file__).resolve().parents[1], "baseline": Path(args.baseline).resolve()}
    for workers in args.workers:
        cpu: dict[str, list[float]] = {name: [] for name in checkouts}
        for round_ in range(args.rounds):
            for name, root in checkouts.items():
                extra = ["--lp-threads", args.lp_threads] if name == "this" else []
                env = {**os.environ, "PYTHONPATH": str(root)}
                out = subprocess.run(
                    [sys.executable, str(root / "benchmarks" / "pairs_per_second.py"), *shared, "--workers",
                     str(workers), *extra], cwd=root, env=env, capture_output=True, text=True, check=True,
                ).stdout
                line = next(ln for ln in out.splitlines() if ln.startswith(f"workers {workers}:"))
                cpu[name].append(float(re.search(r"CPU (\d+(?:\.\d+)?) ms/pair", line).group(1)))
                print(f"round {round_ + 1} {name:<8} {line}", flush=True)
        this, base = (statistics.median(cpu[n]) for n in ("this", "baseline"))
        print(f"workers {workers}: median CPU ms/accepted pair: this {this:.1f}, baseline {base:.1f}, "
              f"this/baseline {this / base:.2f}x; idle-core estimate {workers} x 1000 / CPU ms = "
              f"{workers * 1000 / this:.1f} vs {workers * 1000 / base:.1f} pairs/s")
        if args.size == 256:
            print(f"  floor (renders only, {FLOOR_CPU_MS_256:.1f} CPU ms/pair): this is {this / FLOOR_CPU_MS_256:.2f}x it, "
                  f"baseline {base / FLOOR_CPU_MS_256:.2f}x")


if __name__ == "__main__":
    main()

"""End-to-end pairs/s of the generate flow vs the raw sampler on the same scenes.

  raw sampler    one process: each scene loaded once, sample_pair x N (render + co-visibility only)
  raw, w at once the raw sampler in w processes at the same time (the flow's render-process settings),
                 each taking every w-th unit's pairs: the peer of a w-process flow, since two
                 processes on two cores share caches and memory bandwidth
  units, 1 proc  the unit body without Prefect: + JPEG/PNG encoding, tar, parquet, fsync
  flow, w=1/2    run_generate through Prefect with 1 and 2 render processes, each run starting
                 and stopping its own embedded Prefect server as the CLI does
  --cli          the flow rows (and the fixed cost) as `crocopipe generate CONFIG --quiet`
                 subprocesses in new run folders: what a user meets, imports and server start
                 (overlapping the command's own start) included

Overhead = 1 - (pairs/s) / (raw pairs/s x workers), in wall time; a flow row of w workers also
shows its overhead against the "raw, w at once" row. Both in wall time (needs an idle machine to mean
anything) and in CPU time (process + children: the render processes and the Prefect server),
which other jobs on the machine inflate far less. The fixed cost is a 1-pair flow run, split
into the embedded server's start + stop and the rest.

  python benchmarks/generate_overhead.py --scenes 4 --pairs 32 --size 128
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_config(folder: Path, scenes: int, pairs: int, size: int, workers: int, first_seed: int,
                 pairs_per_shard: int = 32) -> Path:
    path = folder / "run.toml"
    path.write_text(
        f'run_dir = "run"\n[corpus]\npairs_per_scene = {pairs}\npairs_per_shard = {max(1, min(pairs, pairs_per_shard))}\n'
        f"val_fraction = 0.0\nworkers = {workers}\n[corpus.scenes.procedural]\ncount = {scenes}\n"
        f"first_seed = {first_seed}\n[corpus.sampler]\nwidth = {size}\nheight = {size}\n"
    )
    return path


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (render processes, the server)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def raw_part(config_path: str, units: list[dict]) -> tuple[float, float, float]:
    """Sample the pairs of ``units`` with no encoding or writing; (start, end, CPU s) of the work."""
    from pipeline.config import load_run_config
    from pipeline.corpus.plan import WorkUnit
    from pipeline.corpus.unit import process_renderer, process_scene
    from rendering.sampling import sample_pair

    corpus = load_run_config(Path(config_path)).corpus
    renderer = process_renderer(corpus.backend, corpus.backend_options)
    start, cpu = time.time(), time.process_time()
    for fields in units:
        unit = WorkUnit(**fields)
        navigable = process_scene(renderer, unit.scene)
        for k in unit.pair_indices:
            sample_pair(renderer, navigable, unit.scene, k, corpus.seed, corpus.sampler)
    return start, time.time(), time.process_time() - cpu


def raw_at_once(config_path: Path, units: list, workers: int) -> tuple[float, float]:
    """(wall s, CPU s) of :func:`raw_part` in ``workers`` render processes at once, unit i on
    process i mod workers; process start-up is not counted."""
    from pipeline.corpus.unit import render_process_pool, warm_up_render_process

    pool = render_process_pool(workers, "embedded")
    try:
        for done in [pool.submit(warm_up_render_process, "embedded") for _ in range(workers)]:
            done.result()
        parts = [pool.submit(raw_part, str(config_path), [u.as_dict() for u in units[i::workers]])
                 for i in range(workers)]
        spans = [part.result() for part in parts]
    finally:
        pool.shutdown()
    return max(s[1] for s in spans) - min(s[0] for s in spans), sum(s[2] for s in spans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=32, help="pairs per scene")
    parser.add_argument("--pairs-per-shard", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--flows", type=int, nargs="+", default=[1, 2], help="render-process counts of the flow runs")
    parser.add_argument("--no-units", action="store_true", help="skip the unit body without Prefect")
    parser.add_argument("--cli", action="store_true", help="run the flows as `crocopipe generate` commands")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crocopipe-bench-"))
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    from pipeline.prefect_env import configure_prefect

    configure_prefect(tmp / "prefect")
    from pipeline.config import load_run_config
    from pipeline.corpus import plan_units, prepare_corpus_dir, run_unit
    from rendering.backend import SceneSpec
    from rendering.backends import create_renderer
    from rendering.sampling import sample_pair

    def config(folder: Path, workers: int, scenes: int = args.scenes, pairs: int = args.pairs, size: int = args.size,
               first_seed: int = 0):
        folder.mkdir(exist_ok=True)
        return load_run_config(write_config(folder, scenes, pairs, size, workers, first_seed, args.pairs_per_shard))

    n = args.scenes * args.pairs
    base = config(tmp / "raw", 1)
    renderer = create_renderer("embedded")
    wall, cpu = time.perf_counter(), cpu_seconds()
    for scene_spec in {(u.scene_id, u.scene_uri) for u in plan_units(base.corpus)}:
        scene = SceneSpec(*scene_spec)
        navigable = renderer.load_scene(scene)
        for i in range(args.pairs):
            sample_pair(renderer, navigable, scene, i, base.corpus.seed, base.corpus.sampler)
    rows = [("raw sampler", 1, time.perf_counter() - wall, cpu_seconds() - cpu)]
    renderer.close()

    for workers in sorted({w for w in args.flows if w > 1}):
        cfg = config(tmp / f"raw{workers}", workers)
        rows.append((f"raw, {workers} at once", workers, *raw_at_once(tmp / f"raw{workers}" / "run.toml",
                                                                       plan_units(cfg.corpus), workers)))

    if not args.no_units:
        cfg = config(tmp / "units", 1)
        units = plan_units(cfg.corpus)
        prepare_corpus_dir(cfg.corpus_dir, cfg.corpus, units)
        wall, cpu = time.perf_counter(), cpu_seconds()
        for unit in units:
            run_unit(unit.as_dict(), str(cfg.corpus_dir), cfg.corpus.model_dump_json())
        rows.append(("units, no Prefect", 1, time.perf_counter() - wall, cpu_seconds() - cpu))

    def flow_run(cfg_folder: Path, workers: int, scenes: int = args.scenes, pairs: int = args.pairs,
                 size: int = args.size, first_seed: int = 0) -> tuple[float, float]:
        """(wall s, CPU s) of one generate flow run, in this process or as a command."""
        cfg_folder.mkdir(exist_ok=True)
        path = write_config(cfg_folder, scenes, pairs, size, workers, first_seed, args.pairs_per_shard)
        wall, cpu = time.perf_counter(), cpu_seconds()
        if args.cli:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            done = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", str(path), "--quiet"], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"crocopipe generate {path} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        else:
            run_generate(load_run_config(path))
        return time.perf_counter() - wall, cpu_seconds() - cpu

    if args.cli:
        flow_run(tmp / "warm", 1, 1, 1, 32, 1000)  # the database template and the scene cache, as a user's second run finds them
        fixed, fixed_cpu = flow_run(tmp / "fixed", args.flows[-1], 1, 1, 32, 2000)
        print(f"fixed cost of a 1-pair `crocopipe generate` in a new run folder: {fixed:.1f} s wall ({fixed_cpu:.1f} s CPU)")
    else:
        from pipeline.flows.generate import run_generate
        from pipeline.flows.history import command_api

        flow_run(tmp / "warm", 1, 1, 1, 32, 1000)  # imports and the database, as a second command finds them
        wall = time.perf_counter()
        with command_api():
            pass
        server = time.perf_counter() - wall
        fixed, fixed_cpu = flow_run(tmp / "fixed", 1, 1, 1, 32, 2000)
        print(f"fixed cost of a 1-pair flow run: {fixed:.1f} s wall ({fixed_cpu:.1f} s CPU), of which the embedded "
              f"Prefect server's start + stop alone takes {server:.1f} s wall")
    for workers in args.flows:
        rows.append((f"flow, {workers} worker(s)", workers, *flow_run(tmp / f"flow{workers}", workers)))
    print(f"{args.scenes} procedural scenes x {args.pairs} pairs at {args.size} px, {args.pairs_per_shard} pairs "
          f"per unit; {os.cpu_count()} CPUs; raw sampler {rows[0][2]:.1f} s wall for {n} pairs")
    print(f"{'path':<22} {'pairs/s':>8} {'wall overhead vs raw x workers':>31} {'vs raw, w at once':>18} "
          f"{'CPU s':>7} {'CPU overhead vs raw':>20}")
    raw_rate, raw_cpu = n / rows[0][2], rows[0][3]
    at_once = {workers: n / seconds for name, workers, seconds, _ in rows if name.startswith("raw, ")}
    for name, workers, seconds, cpu_s in rows:
        rate = n / seconds
        peer = at_once.get(workers) if name.startswith("flow") else None
        versus = "" if peer is None else f"{100 * (1 - rate / peer):.1f}%"
        print(f"{name:<22} {rate:>8.2f} {100 * (1 - rate / (raw_rate * workers)):>30.1f}% {versus:>18} {cpu_s:>7.1f} "
              f"{100 * (cpu_s / raw_cpu - 1):>19.1f}%")


if __name__ == "__main__":
    main()

"""End-to-end pairs/s of the generate flow vs the raw sampler on the same scenes.

  raw sampler    one process: load scene, sample_pair x N (render + co-visibility only)
  units, 1 proc  the unit body without Prefect: + JPEG/PNG encoding, tar, parquet, fsync
  flow, w=1/2    generate_corpus through Prefect with 1 and 2 render processes (the embedded
                 server is started by a warm-up flow first, so its start-up is not counted)

Overhead = 1 - (pairs/s) / (raw pairs/s x workers). Needs an idle machine to mean anything.

  python benchmarks/generate_overhead.py --scenes 4 --pairs 32 --size 128
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def write_config(folder: Path, scenes: int, pairs: int, size: int, workers: int, first_seed: int) -> Path:
    path = folder / "run.toml"
    path.write_text(
        f'run_dir = "run"\n[corpus]\npairs_per_scene = {pairs}\npairs_per_shard = {max(1, pairs // 2)}\n'
        f"val_fraction = 0.0\nworkers = {workers}\n[corpus.scenes.procedural]\ncount = {scenes}\n"
        f"first_seed = {first_seed}\n[corpus.sampler]\nwidth = {size}\nheight = {size}\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=32, help="pairs per scene")
    parser.add_argument("--size", type=int, default=128)
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

    n = args.scenes * args.pairs
    base = load_run_config(write_config(tmp, args.scenes, args.pairs, args.size, 1, 0))
    renderer = create_renderer("embedded")
    start = time.perf_counter()
    for unit in plan_units(base.corpus):
        scene = SceneSpec(unit.scene_id, unit.scene_uri)
        navigable = renderer.load_scene(scene)
        for i in unit.pair_indices:
            sample_pair(renderer, navigable, scene, i, base.corpus.seed, base.corpus.sampler)
    raw = n / (time.perf_counter() - start)
    renderer.close()

    folder = tmp / "units"
    folder.mkdir()
    cfg = load_run_config(write_config(folder, args.scenes, args.pairs, args.size, 1, 0))
    units = plan_units(cfg.corpus)
    prepare_corpus_dir(cfg.corpus_dir, cfg.corpus, units)
    start = time.perf_counter()
    for unit in units:
        run_unit(unit.as_dict(), str(cfg.corpus_dir), cfg.corpus.model_dump_json(), cfg.corpus.content_hash())
    unit_rate = n / (time.perf_counter() - start)

    from pipeline.flows.generate import run_generate

    warm = tmp / "warm"
    warm.mkdir()
    run_generate(load_run_config(write_config(warm, 1, 1, 32, 1, 1000)))  # starts the embedded server
    fixed = tmp / "fixed"
    fixed.mkdir()
    start = time.perf_counter()
    run_generate(load_run_config(write_config(fixed, 1, 1, 32, 1, 2000)))
    print(f"fixed cost of a 1-pair flow run (pool start, scene, merge, card, history): "
          f"{time.perf_counter() - start:.1f} s")
    rows = [("raw sampler", 1, raw), ("units, no Prefect", 1, unit_rate)]
    for workers in (1, 2):
        folder = tmp / f"flow{workers}"
        folder.mkdir()
        cfg = load_run_config(write_config(folder, args.scenes, args.pairs, args.size, workers, 0))
        start = time.perf_counter()
        run_generate(cfg)
        rows.append((f"flow, {workers} worker(s)", workers, n / (time.perf_counter() - start)))
    print(f"{args.scenes} procedural scenes x {args.pairs} pairs at {args.size} px; {os.cpu_count()} CPUs")
    print(f"{'path':<22} {'pairs/s':>8} {'overhead vs raw x workers':>26}")
    for name, workers, rate in rows:
        print(f"{name:<22} {rate:>8.2f} {100 * (1 - rate / (raw * workers)):>25.1f}%")


if __name__ == "__main__":
    main()

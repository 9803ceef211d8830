"""Floor search cost on a large indoor mesh: CPU time and peak memory of find_navigable_floor.

The mesh: a 100 x 100 m storey (floor and ceiling as 200 x 200 quad grids at 0 and 3 m, 20 + 20
walls 3 m high across the whole floor in 1 m panels with a door every 10 m, 2000 furniture
boxes), about 230k triangles. Run it on one core (the search is single-threaded numpy):

    OMP_NUM_THREADS=1 python benchmarks/floor_search.py [--repeats 3] [--implementation FILE]
    OMP_NUM_THREADS=1 python benchmarks/floor_search.py --compare OTHER_NAVIGABLE_PY [--repeats 3]

``--implementation`` loads find_navigable_floor from another copy of rendering/navigable.py.
``--compare`` times this tree's version (A) and another copy (B) in alternating rounds in one
process (A, B, A, B, ...), checks that both find the same grid and prints the paired ratio of
CPU times. Peak memory is measured in a fresh process per version that loads the mesh from a
file and searches once (the peak RSS of a process never goes down, and building the mesh peaks
higher than the search).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]


def storey(size: float = 100.0, quads: int = 200, walls: int = 20, boxes: int = 2000, seed: int = 0) -> trimesh.Scene:
    rng = np.random.default_rng(seed)
    parts = {}
    for name, height, flip in (("floor", 0.0, False), ("ceiling", 3.0, True)):
        xs = np.linspace(0, size, quads + 1)
        gx, gz = np.meshgrid(xs, xs)
        vertices = np.stack([gx.ravel(), np.full(gx.size, height), gz.ravel()], axis=1)
        idx = np.arange(gx.size).reshape(quads + 1, quads + 1)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])  # counter-clockwise from above
        grid = trimesh.Trimesh(vertices, faces[:, ::-1] if flip else faces, process=False)
        parts[name] = grid
    panels = []
    for k in range(walls):
        at = (k + 0.5) * size / walls
        for s in range(int(size)):
            if s % 10 == 5:
                continue  # a door every 10 m
            panels.append(trimesh.creation.box(extents=[1.0, 3.0, 0.1], transform=trimesh.transformations.translation_matrix([s + 0.5, 1.5, at])))
            panels.append(trimesh.creation.box(extents=[0.1, 3.0, 1.0], transform=trimesh.transformations.translation_matrix([at, 1.5, s + 0.5])))
    parts["walls"] = trimesh.util.concatenate(panels)
    furniture = []
    for _ in range(boxes):
        w, h, d = rng.uniform(0.3, 1.2), rng.uniform(0.4, 1.0), rng.uniform(0.3, 1.2)
        x, z = rng.uniform(1, size - 1, 2)
        furniture.append(trimesh.creation.box(extents=[w, h, d], transform=trimesh.transformations.translation_matrix([x, h / 2, z])))
    parts["furniture"] = trimesh.util.concatenate(furniture)
    return trimesh.Scene(parts)


def load_finder(path: str | None):
    """find_navigable_floor of this tree (None) or of another copy of rendering/navigable.py."""
    if path is None:
        from rendering.navigable import find_navigable_floor

        return find_navigable_floor
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"navigable_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.find_navigable_floor


def timed(find, mesh) -> tuple[float, float, object]:
    start, start_cpu = time.perf_counter(), time.process_time()
    grid = find(mesh)
    return time.perf_counter() - start, time.process_time() - start_cpu, grid


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not carried over from the
    parent that started it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_mesh(mesh: trimesh.Scene, path: Path) -> None:
    arrays = {}
    for i, name in enumerate(sorted(mesh.geometry)):
        arrays[f"v{i}"], arrays[f"f{i}"] = mesh.geometry[name].vertices, mesh.geometry[name].faces
    np.savez(path, **arrays)


def load_mesh(path: Path) -> trimesh.Scene:
    with np.load(path) as data:
        count = len(data.files) // 2
        return trimesh.Scene([trimesh.Trimesh(data[f"v{i}"], data[f"f{i}"], process=False) for i in range(count)])


def peak_in_fresh_process(path: str | None, mesh_file: Path) -> dict:
    """Peak RSS of a process that loads the saved mesh and runs one search (building the mesh
    peaks higher than the search, so the process that measures must not build it)."""
    command = [sys.executable, __file__, "--peak-only", str(mesh_file)] + (["--implementation", path] if path else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--implementation", type=str, default=None, help="another navigable.py to time")
    parser.add_argument("--compare", type=str, default=None, help="a navigable.py to time against, alternately")
    parser.add_argument("--peak-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    find = load_finder(args.implementation)
    if args.peak_only:
        mesh = load_mesh(args.peak_only)
        base = peak_rss_mb()
        timed(find, mesh)
        print(json.dumps({"before_mb": base, "peak_mb": peak_rss_mb()}))
        return
    mesh = storey()
    triangles = sum(len(g.faces) for g in mesh.geometry.values())
    if args.compare is None:
        times, cpu = [], []
        for _ in range(args.repeats):
            wall, used, grid = timed(find, mesh)
            times.append(wall)
            cpu.append(used)
        print(f"triangles: {triangles}, extent: 100 x 100 m, floor found: {grid.area_m2:.0f} m^2 "
              f"({grid.shape[0]} x {grid.shape[1]} cells)")
        print(f"find_navigable_floor: median {np.median(times):.2f} s wall, {np.median(cpu):.2f} s CPU "
              f"(min {min(times):.2f} s wall) over {args.repeats} runs")
        with tempfile.TemporaryDirectory() as folder:
            save_mesh(mesh, Path(folder) / "mesh.npz")
            peak = peak_in_fresh_process(args.implementation, Path(folder) / "mesh.npz")
        print(f"peak RSS of a process that loads the mesh and searches once: {peak['peak_mb']:.0f} MB "
              f"({peak['before_mb']:.0f} MB before the search, mesh included)")
        return

    other = load_finder(args.compare)
    rows = []
    for round_ in range(args.repeats):
        wall_a, cpu_a, grid_a = timed(find, mesh)
        wall_b, cpu_b, grid_b = timed(other, mesh)
        same = (grid_a.shape == grid_b.shape and grid_a.heights.tobytes() == grid_b.heights.tobytes()
                and np.array_equal(grid_a.origin_xz, grid_b.origin_xz))
        rows.append((cpu_a, cpu_b, wall_a, wall_b))
        print(f"round {round_ + 1}: A {cpu_a:.2f} s CPU ({wall_a:.2f} s wall), B {cpu_b:.2f} s CPU "
              f"({wall_b:.2f} s wall), A/B {cpu_a / cpu_b:.3f}, same grid: {same}")
        if not same:
            sys.exit("the two implementations found different grids")
    cpu_a, cpu_b, wall_a, wall_b = (np.array(col) for col in zip(*rows))
    print(f"triangles: {triangles}, extent: 100 x 100 m, floor found: {grid_a.area_m2:.0f} m^2 "
          f"({grid_a.shape[0]} x {grid_a.shape[1]} cells)")
    print(f"A = {args.implementation or 'rendering/navigable.py'}: median {np.median(cpu_a):.2f} s CPU, "
          f"{np.median(wall_a):.2f} s wall")
    print(f"B = {args.compare}: median {np.median(cpu_b):.2f} s CPU, {np.median(wall_b):.2f} s wall")
    print(f"CPU ratio A/B: median of the paired rounds {np.median(cpu_a / cpu_b):.3f} over {args.repeats} rounds")
    with tempfile.TemporaryDirectory() as folder:
        save_mesh(mesh, Path(folder) / "mesh.npz")
        peak_a = peak_in_fresh_process(args.implementation, Path(folder) / "mesh.npz")
        peak_b = peak_in_fresh_process(args.compare, Path(folder) / "mesh.npz")
    print(f"peak RSS of a process that loads the mesh and searches once: A {peak_a['peak_mb']:.0f} MB, "
          f"B {peak_b['peak_mb']:.0f} MB, ratio {peak_a['peak_mb'] / peak_b['peak_mb']:.2f} (before the search: "
          f"{peak_a['before_mb']:.0f} MB, mesh included; the search adds A "
          f"{peak_a['peak_mb'] - peak_a['before_mb']:.0f} MB, B {peak_b['peak_mb'] - peak_b['before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()

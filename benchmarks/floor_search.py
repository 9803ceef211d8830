"""Floor search cost on a large indoor mesh: wall time and peak memory of find_navigable_floor.

The mesh: a 100 x 100 m storey (floor and ceiling as 200 x 200 quad grids at 0 and 3 m, 20 + 20
walls 3 m high across the whole floor in 1 m panels with a door every 10 m, 2000 furniture
boxes), about 230k triangles. Run it on one core (the search is single-threaded numpy):

    OMP_NUM_THREADS=1 python benchmarks/floor_search.py [--repeats 3] [--implementation FILE]

``--implementation`` loads find_navigable_floor from another copy of rendering/navigable.py (to
time two versions alternately in one comparison).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import trimesh


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--implementation", type=str, default=None, help="another navigable.py to time")
    args = parser.parse_args()
    if args.implementation:
        import importlib.util

        spec = importlib.util.spec_from_file_location("navigable_under_test", args.implementation)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        find_navigable_floor = module.find_navigable_floor
    else:
        from rendering.navigable import find_navigable_floor

    mesh = storey()
    triangles = sum(len(g.faces) for g in mesh.geometry.values())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        grid = find_navigable_floor(mesh)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"triangles: {triangles}, extent: 100 x 100 m, floor found: {grid.area_m2:.0f} m^2 ({grid.shape[0]} x {grid.shape[1]} cells)")
    print(f"find_navigable_floor: median {np.median(times):.2f} s wall, {np.median(cpu):.2f} s CPU "
          f"(min {min(times):.2f} s wall) over {args.repeats} runs")
    print(f"peak RSS: {peak:.0f} MB (before the search: {base:.0f} MB, mesh included)")


if __name__ == "__main__":
    main()

"""Render frames/s per process for the embedded renderer (or any backend), median of repeats.

Scenes: a procedural indoor scene (``procedural:<seed>``) with poses sampled the way the pair
sampler does (random navigable point, eye height 1.2-1.8 m, random yaw, small tilt/roll), and a
generated large mesh (a bumpy vertex-coloured sphere of ~500k triangles seen from inside, so
every pixel is covered). A frame = render + read back RGB and depth.

    python benchmarks/render_fps.py --sizes 256 512 --frames 100 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import trimesh

from rendering import camera
from rendering.backend import SceneSpec
from rendering.backends import create_renderer


def large_mesh(min_triangles: int = 500_000, seed: int = 0) -> trimesh.Scene:
    """A closed sphere of radius ~5 m with bumpy, randomly coloured surface."""
    rng = np.random.default_rng(seed)
    count = int(np.ceil(np.sqrt(min_triangles / 4.0)))  # uv_sphere makes ~4 count^2 triangles
    sphere = trimesh.creation.uv_sphere(radius=5.0, count=[count, count])
    bumps = 1.0 + 0.05 * np.sin(7.0 * sphere.vertices[:, 0]) * np.cos(5.0 * sphere.vertices[:, 2])
    sphere.vertices = sphere.vertices * bumps[:, None] + np.array([0.0, 1.5, 0.0])
    sphere.visual.vertex_colors = rng.integers(0, 256, size=(len(sphere.vertices), 4), dtype=np.uint8)
    return trimesh.Scene(sphere)


def indoor_poses(navigable, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(count):
        floor = navigable.sample_point(rng)
        eye = floor + np.array([0.0, rng.uniform(1.2, 1.8), 0.0])
        rotation = camera.yaw_pitch_roll_rotation(rng.uniform(0, 2 * np.pi), rng.uniform(-0.17, 0.17), rng.uniform(-0.09, 0.09))
        poses.append(camera.pose_from_rotation_translation(rotation, eye))
    return poses


def sphere_poses(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(count):
        rotation = camera.yaw_pitch_roll_rotation(rng.uniform(0, 2 * np.pi), rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3))
        poses.append(camera.pose_from_rotation_translation(rotation, np.array([0.0, 1.5, 0.0]) + rng.normal(0, 0.5, 3)))
    return poses


def frames_per_second(renderer, poses: list[np.ndarray], size: int, repeats: int) -> tuple[float, float, float]:
    """Median frames/s over ``repeats`` passes over ``poses``, median CPU ms per frame (all threads
    of this process, so it stays meaningful on a busy machine) and the mean valid-depth fraction."""
    K = camera.intrinsics_from_fov(size, size, 60.0)
    renderer.render(K, poses[0], size, size)  # warm-up: shader compile, framebuffer allocation
    rates, cpu_ms, valid = [], [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for pose in poses:
            valid.append(renderer.render(K, pose, size, size).valid_fraction)
        rates.append(len(poses) / (time.perf_counter() - start))
        cpu_ms.append((time.process_time() - start_cpu) / len(poses) * 1000.0)
    return statistics.median(rates), statistics.median(cpu_ms), float(np.mean(valid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="embedded")
    parser.add_argument("--device-index", type=int, default=None, help="EGL device (GPU) index")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--frames", type=int, default=100, help="frames per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--procedural-seed", type=int, default=0)
    parser.add_argument("--large-triangles", type=int, default=500_000)
    parser.add_argument("--no-culling", action="store_true", help="embedded: draw every chunk")
    parser.add_argument("--scenes", nargs="+", choices=["procedural", "large"], default=["procedural", "large"])
    args = parser.parse_args()

    options = {} if args.device_index is None else {"device_index": args.device_index}
    if args.no_culling:
        options["frustum_culling"] = False
    renderer = create_renderer(args.backend, **options)
    print(f"backend={args.backend} gl={getattr(renderer, 'gl_renderer', '?')}")
    print(f"{'scene':<28} {'triangles':>10} {'size':>6} {'load s':>7} {'frames/s':>9} {'cpu ms':>7} {'valid':>6}")
    try:
        if "procedural" in args.scenes:
            start = time.perf_counter()
            navigable = renderer.load_scene(SceneSpec("procedural", f"procedural:{args.procedural_seed}"))
            load_s = time.perf_counter() - start
            triangles = renderer.resource_counts()["triangles"] if hasattr(renderer, "resource_counts") else -1
            poses = indoor_poses(navigable, args.frames, seed=1)
            for size in args.sizes:
                fps, cpu_ms, valid = frames_per_second(renderer, poses, size, args.repeats)
                name = f"procedural:{args.procedural_seed}"
                print(f"{name:<28} {triangles:>10} {size:>6} {load_s:>7.2f} {fps:>9.1f} {cpu_ms:>7.1f} {valid:>6.2f}")

        if "large" in args.scenes and hasattr(renderer, "load_mesh"):
            mesh = large_mesh(args.large_triangles)
            start = time.perf_counter()
            renderer.load_mesh(mesh, scene_id="large")
            load_s = time.perf_counter() - start
            poses = sphere_poses(args.frames, seed=2)
            triangles = sum(len(g.faces) for g in mesh.geometry.values())
            for size in args.sizes:
                fps, cpu_ms, valid = frames_per_second(renderer, poses, size, args.repeats)
                name = "large sphere (generated)"
                print(f"{name:<28} {triangles:>10} {size:>6} {load_s:>7.2f} {fps:>9.1f} {cpu_ms:>7.1f} {valid:>6.2f}")
    finally:
        renderer.close()


if __name__ == "__main__":
    main()

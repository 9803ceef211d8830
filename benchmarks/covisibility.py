"""Milliseconds per co-visibility check: reprojection vs croco_nn.

Depth maps are exact z-depth of a closed 6 x 3 x 5 m box room ray-cast from two camera poses that
overlap partially (the typical accepted-pair case), so the figure does not depend on a renderer.

    python benchmarks/covisibility.py --size 256 --repeats 30
    python benchmarks/covisibility.py --size 256 --sampled-pairs 40 --scenes procedural:0 procedural:1

The second form also samples pairs with the embedded renderer and reports how far croco_nn's
pair score is from reprojection's (the agreement the tests rely on) and the timing on real pairs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rendering import camera
from rendering.covisibility import compute_covisibility


def box_room_depth(K: np.ndarray, pose: np.ndarray, size: int, lo, hi) -> np.ndarray:
    """Exact z-depth from inside an axis-aligned box: the nearest positive exit distance per ray."""
    rays = camera.pixel_rays(size, size, K) @ pose[:3, :3].T  # camera z == 1, so t is z-depth
    eye = pose[:3, 3]
    with np.errstate(divide="ignore"):
        t_lo = (np.asarray(lo) - eye) / rays
        t_hi = (np.asarray(hi) - eye) / rays
    t_exit = np.where(rays > 0, t_hi, t_lo)
    t_exit[~np.isfinite(t_exit)] = np.inf
    return t_exit.min(axis=-1).astype(np.float32)


def time_methods(methods: tuple[str, ...], args: tuple, repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms and pair score per method; methods alternate so machine load hits both alike."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    scores = {m: compute_covisibility(m, *args).score for m in methods}  # warm-up
    for _ in range(repeats):
        for method in methods:
            start = time.perf_counter()
            compute_covisibility(method, *args)
            times[method].append((time.perf_counter() - start) * 1e3)
    return {m: (statistics.median(times[m]), scores[m]) for m in methods}


def sampled_pair_agreement(scenes: list[str], pairs: int, size: int, repeats: int) -> None:
    from rendering.backend import SceneSpec
    from rendering.backends import create_renderer
    from rendering.sampling import SamplerConfig, sample_pair

    config = SamplerConfig(width=size, height=size, min_covis=0.3)
    diffs, times = [], {"reprojection": [], "croco_nn": []}
    with create_renderer("embedded") as renderer:
        for uri in scenes:
            scene = SceneSpec(uri.replace(":", "-"), uri)
            navigable = renderer.load_scene(scene)
            for k in range(pairs):
                p = sample_pair(renderer, navigable, scene, k, 0, config)
                inputs = (p.depth1, p.depth2, p.K1, p.K2, p.cam2world1, p.cam2world2)
                for method, (ms, _) in time_methods(("reprojection", "croco_nn"), inputs, repeats).items():
                    times[method].append(ms)
                diffs.append(compute_covisibility("croco_nn", *inputs).score - p.covis.score)
    d = np.array(diffs)
    a = np.abs(d)
    print(f"{len(d)} sampled pairs at {size}x{size} (min_covis 0.3), croco_nn - reprojection pair score: "
          f"mean {d.mean():+.3f}, |diff| median {np.median(a):.3f}, p90 {np.quantile(a, 0.9):.3f}, max {a.max():.3f}")
    rep, nn = statistics.median(times["reprojection"]), statistics.median(times["croco_nn"])
    print(f"on sampled pairs: reprojection {rep:.2f} ms, croco_nn {nn:.2f} ms per check (median), ratio {nn / rep:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sampled-pairs", type=int, default=0, help="pairs per scene to sample (0: skip)")
    parser.add_argument("--scenes", nargs="+", default=["procedural:0", "procedural:1"])
    args = parser.parse_args()

    K = camera.intrinsics_from_fov(args.size, args.size, 60.0)
    lo, hi = (-3.0, 0.0, -2.5), (3.0, 3.0, 2.5)
    pose1 = camera.apply_orientation_noise(
        camera.look_at(np.array([-1.5, 1.5, 1.0]), np.array([1.0, 1.2, -2.5])), *np.radians([2, -5, 3])
    )
    pose2 = camera.look_at(np.array([0.5, 1.6, 1.8]), np.array([0.0, 1.0, -2.5]))
    inputs = (box_room_depth(K, pose1, args.size, lo, hi), box_room_depth(K, pose2, args.size, lo, hi), K, K, pose1, pose2)

    results = time_methods(("reprojection", "croco_nn"), inputs, args.repeats)
    for method, (ms, score) in results.items():
        print(f"{method:>12}: {ms:8.2f} ms/check (median of {args.repeats}), pair score {score:.3f}")
    ratio = results["croco_nn"][0] / results["reprojection"][0]
    print(f"croco_nn / reprojection time ratio at {args.size}x{args.size}: {ratio:.1f}x")
    if args.sampled_pairs:
        sampled_pair_agreement(args.scenes, args.sampled_pairs, args.size, max(1, args.repeats // 10))


if __name__ == "__main__":
    main()

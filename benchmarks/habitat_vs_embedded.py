"""Frames/s and accepted pairs/s of the habitat backend vs the embedded renderer, same run.

Both backends render the same scenes at the same resolution from the same poses (drawn once from
the embedded renderer's navigable floor), each in its own spawned process (one GL context per
process, as in the corpus flow); then each samples the same pair indices with the CroCo sampler.
Also prints how far the two backends' images differ for those poses.

    python benchmarks/habitat_vs_embedded.py --scenes procedural:0 /path/room.glb --frames 200 --pairs 20

Needs habitat_sim (e.g. inside the development chroot: tests/habitat/run_in_chroot.sh's kit).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time

import numpy as np


def _poses(scenes: list[str], count: int, seed: int) -> dict[str, list[np.ndarray]]:
    from rendering import camera
    from rendering.backend import SceneSpec
    from rendering.backends import create_renderer

    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    with create_renderer("embedded") as renderer:
        for i, uri in enumerate(scenes):
            nav = renderer.load_scene(SceneSpec(f"scene-{i}", uri))
            poses = []
            for _ in range(count):
                eye = nav.sample_point(rng) + np.array([0.0, rng.uniform(1.2, 1.8), 0.0])
                yaw = rng.uniform(0, 2 * math.pi)
                rot = camera.yaw_pitch_roll_rotation(yaw, rng.uniform(-0.17, 0.17), rng.uniform(-0.09, 0.09))
                poses.append(camera.pose_from_rotation_translation(rot, eye))
            out[uri] = poses
    return out


def _worker(job: dict) -> dict:
    from rendering import camera
    from rendering.backend import SceneSpec
    from rendering.backends import create_renderer
    from rendering.sampling import PairSamplingError, SamplerConfig, sample_pair

    size = job["size"]
    K = camera.intrinsics_from_fov(size, size, job["hfov"])
    renderer = create_renderer(job["backend"])
    result = {"backend": job["backend"], "frames": 0, "render_s": 0.0, "load_s": 0.0, "accepted": 0,
              "failed": 0, "sample_s": 0.0, "views": {}}
    config = SamplerConfig(width=size, height=size, hfov_deg=job["hfov"])
    try:
        for i, uri in enumerate(job["scenes"]):
            scene = SceneSpec(f"scene-{i}", uri)
            start = time.perf_counter()
            nav = renderer.load_scene(scene)
            result["load_s"] += time.perf_counter() - start
            poses = job["poses"][uri]
            renderer.render(K, poses[0], size, size)  # warm-up (shaders, buffers)
            start = time.perf_counter()
            for pose in poses:
                view = renderer.render(K, pose, size, size)
            result["render_s"] += time.perf_counter() - start
            result["frames"] += len(poses)
            result["views"][uri] = [renderer.render(K, p, size, size) for p in poses[: job["compare"]]]
            start = time.perf_counter()
            for pair_index in range(job["pairs"]):
                try:
                    sample_pair(renderer, nav, scene, pair_index, job["seed"], config)
                    result["accepted"] += 1
                except PairSamplingError:
                    result["failed"] += 1
            result["sample_s"] += time.perf_counter() - start
        del view
    finally:
        renderer.close()
    result["views"] = {uri: [(v.rgb, v.depth) for v in views] for uri, views in result["views"].items()}
    return result


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="+", default=["procedural:0", "procedural:1"])
    parser.add_argument("--frames", type=int, default=200, help="poses rendered per scene and backend")
    parser.add_argument("--pairs", type=int, default=20, help="pairs sampled per scene and backend")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--hfov", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", type=int, default=20, help="poses per scene compared across backends")
    args = parser.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        poses = pool.apply(_poses, (args.scenes, args.frames, args.seed))
    results = {}
    for backend in ("embedded", "habitat"):
        job = {"backend": backend, "scenes": args.scenes, "poses": poses, "size": args.size, "hfov": args.hfov,
               "pairs": args.pairs, "seed": args.seed, "compare": args.compare}
        with ctx.Pool(1) as pool:  # a fresh process per backend: one GL context, as in the flow
            results[backend] = pool.apply(_worker, (job,))

    print(f"scenes {args.scenes}; {args.size}x{args.size}, hfov {args.hfov}; {args.frames} frames and "
          f"{args.pairs} pairs per scene; cpu count {os.cpu_count()}")
    for backend, r in results.items():
        print(f"{backend:9s} {r['frames'] / r['render_s']:8.1f} frames/s (RGB + depth)   "
              f"{r['accepted'] / r['sample_s']:6.2f} accepted pairs/s ({r['accepted']} accepted, {r['failed']} failed)   "
              f"scene load {r['load_s'] / len(args.scenes):.2f} s/scene")
    emb, hab = results["embedded"], results["habitat"]
    print(f"habitat / embedded: frames/s x{(hab['frames'] / hab['render_s']) / (emb['frames'] / emb['render_s']):.2f}, "
          f"pairs/s x{(hab['accepted'] / hab['sample_s']) / (emb['accepted'] / emb['sample_s']):.2f}")
    for uri in args.scenes:
        diffs, psnrs = [], []
        for (rgb_e, d_e), (rgb_h, d_h) in zip(emb["views"][uri], hab["views"][uri]):
            both = (d_e > 0) & (d_h > 0)
            diffs.append(np.abs(d_e - d_h)[both])
            psnrs.append(_psnr(rgb_e, rgb_h))
        d = np.concatenate(diffs)
        print(f"  {uri}: depth |diff| median {1000 * np.median(d):.3f} mm, p99 {1000 * np.quantile(d, 0.99):.1f} mm; "
              f"RGB PSNR median {np.median(psnrs):.1f} dB (min {min(psnrs):.1f})")


if __name__ == "__main__":
    main()

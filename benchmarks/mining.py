"""Pair-miner throughput on a rendered 640x480 RGB-D sequence in ScanNet's export layout.

A camera loops smoothly through a procedural room for ``--frames`` frames (30 fps-like motion);
only the keyframes the miner reads (every ``--stride``-th) are rendered, the other frames share
their nearest keyframe's files (the miner never opens them; the reader parses every pose file).
The sequence is cached in ``--cache`` so repeated runs time only the miner.

    python benchmarks/mining.py --frames 5000 --cache /tmp/crocopipe-mining-bench
    python benchmarks/mining.py --frames 5000 --cache /tmp/crocopipe-mining-bench --compare-frames 300
    python benchmarks/mining.py --frames 5000 --cache /tmp/crocopipe-mining-bench --threads 2

Prints: read time, candidates, exact scores and accepted pairs, wall and process CPU seconds, and
rates per CPU-second (the per-core figure, meaningful on a shared machine), with the default
pre-filters; with ``--compare-frames N`` also the same
figures with and without pre-filters on the first N frames.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np


def write_sequence(folder: Path, frames: int, stride: int, width: int, height: int) -> None:
    from rendering import camera
    from rendering.backend import SceneSpec
    from rendering.captures.record import to_integer_centres
    from rendering.backends.embedded import EmbeddedRenderer

    K = camera.intrinsics_from_fov(width, height, 58.0)
    for name in ("color", "depth", "pose", "intrinsic"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    K4 = np.eye(4)
    K4[0, 0], K4[1, 1], K4[0, 2], K4[1, 2] = to_integer_centres(K)
    for name in ("intrinsic_color.txt", "intrinsic_depth.txt"):
        np.savetxt(folder / "intrinsic" / name, K4)
    with EmbeddedRenderer() as renderer:
        navigable = renderer.load_scene(SceneSpec("mining-bench", "procedural:7?rooms=1"))
        centre = np.mean([navigable.sample_point(np.random.default_rng(i)) for i in range(64)], axis=0)
        for i in range(frames):
            s = i / frames
            angle = 4 * math.pi * s
            eye = centre + np.array([1.0 * math.cos(angle), 1.5 + 0.1 * math.sin(7 * angle), 1.0 * math.sin(angle)])
            yaw = -angle + 0.4 * math.sin(3 * angle)
            pose = camera.pose_from_rotation_translation(camera.yaw_pitch_roll_rotation(yaw, -0.15, 0.0), eye)
            np.savetxt(folder / "pose" / f"{i}.txt", pose)
            key = i - i % stride
            if i == key:
                view = renderer.render(K, pose, width, height)
                cv2.imwrite(str(folder / "color" / f"{i}.jpg"), view.rgb[:, :, ::-1])
                cv2.imwrite(str(folder / "depth" / f"{i}.png"), np.clip(np.rint(view.depth * 1000), 0, 65535).astype(np.uint16))
            else:
                for sub, ext in (("color", "jpg"), ("depth", "png")):
                    target = folder / sub / f"{i}.{ext}"
                    if not target.exists():
                        os.link(folder / sub / f"{key}.{ext}", target)


def run(sequence, config, label: str, threads: int = 1) -> None:
    from rendering.mining import mine_sequence

    pairs, stats = mine_sequence(sequence, config, threads=threads)
    s, cpu = stats.seconds, stats.cpu_seconds
    print(f"{label}: {len(sequence.frames)} frames, {stats.keyframes} keyframes, {stats.candidates} candidates, "
          f"{stats.scored} exact scores, {stats.accepted} accepted; wall {s:.1f} s, CPU {cpu:.1f} s "
          f"(exact scores {1000 * stats.seconds_exact / max(1, stats.scored):.1f} ms wall each)")
    print(f"    per CPU-second: {stats.candidates / cpu:.0f} candidates, {stats.scored / cpu:.1f} exact scores, "
          f"{stats.accepted / cpu:.1f} accepted pairs; rejected {stats.rejected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--stride", type=int, default=5, help="frame_stride (only these frames are rendered)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/crocopipe-mining-bench"))
    parser.add_argument("--threads", type=int, default=0, help="also mine the whole sequence with this many threads")
    parser.add_argument("--compare-frames", type=int, default=0, help="also time with/without pre-filters on N frames")
    args = parser.parse_args()

    from rendering.captures import read_sequence
    from rendering.captures.record import CaptureSequence
    from rendering.mining import MiningConfig

    folder = args.cache / f"scene{args.frames:04d}_{args.width}x{args.height}_s{args.stride}"
    if not (folder / "pose" / f"{args.frames - 1}.txt").is_file():
        t0 = time.perf_counter()
        write_sequence(folder, args.frames, args.stride, args.width, args.height)
        print(f"rendered and wrote the sequence in {time.perf_counter() - t0:.0f} s -> {folder}")
    t0 = time.perf_counter()
    sequence = read_sequence("scannet", folder)
    read_s = time.perf_counter() - t0
    print(f"read {len(sequence.frames)} frames (pose files, intrinsics) in {read_s:.1f} s")
    config = MiningConfig(frame_stride=args.stride)
    run(sequence, config, "default config, whole sequence, 1 thread")
    if args.threads > 1:
        run(sequence, config, f"default config, whole sequence, {args.threads} threads", args.threads)
    if args.compare_frames:
        part = CaptureSequence(sequence.dataset, sequence.sequence_id, sequence.root,
                               sequence.frames[: args.compare_frames])
        run(part, config, f"first {args.compare_frames} frames, pre-filters on ")
        run(part, config.model_copy(update={"prefilters": False}), f"first {args.compare_frames} frames, pre-filters off")


if __name__ == "__main__":
    main()

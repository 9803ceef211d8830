"""Rendered RGB-D sequences written in each capture dataset's exact layout (test data, made here).

A camera moves along a smooth arc inside a procedural room; the embedded renderer gives exact
colour and z-depth. Writers put the frames on disk the way ScanNet's SensReader, ARKitScenes and
TUM RGB-D do (integer pixel-centre intrinsics, their depth units, their pose conventions).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rendering import camera
from rendering.backend import SceneSpec
from rendering.captures.record import to_integer_centres


@dataclass
class RenderedFrame:
    rgb: np.ndarray  # colour at the colour camera's size
    depth: np.ndarray  # float32 metres at the depth camera's size
    cam2world: np.ndarray


@dataclass
class RenderedSequence:
    frames: list[RenderedFrame]
    K_color: np.ndarray
    color_size: tuple[int, int]
    K_depth: np.ndarray
    depth_size: tuple[int, int]


def smooth_trajectory(n: int, seed: int = 3) -> list[np.ndarray]:
    """cam2world poses along an arc: the camera walks ~1 m and turns ~50 degrees, head height."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi)
    poses = []
    for k in range(n):
        s = k / max(1, n - 1)
        yaw = phase + math.radians(50.0) * s
        eye = np.array([0.6 * math.cos(2.0 * s), 1.5 + 0.05 * math.sin(3.0 * s), 0.6 * math.sin(2.0 * s)])
        poses.append(camera.pose_from_rotation_translation(camera.yaw_pitch_roll_rotation(yaw, -0.1, 0.02), eye))
    return poses


def render_sequence(renderer, n: int = 8, color_size=(64, 48), depth_size=(48, 36), hfov_color=62.0,
                    hfov_depth=58.0, scene_uri: str = "procedural:4?rooms=1", seed: int = 3) -> RenderedSequence:
    navigable = renderer.load_scene(SceneSpec("capture-test", scene_uri))
    centre = navigable.sample_point(np.random.default_rng(seed))
    K_color = camera.intrinsics_from_fov(*color_size, hfov_color)
    K_depth = camera.intrinsics_from_fov(*depth_size, hfov_depth)
    frames = []
    for pose in smooth_trajectory(n, seed):
        pose = pose.copy()
        pose[:3, 3] += np.array([centre[0], centre[1], centre[2]])
        colour = renderer.render(K_color, pose, *color_size)
        depth = renderer.render(K_depth, pose, *depth_size)
        frames.append(RenderedFrame(colour.rgb, depth.depth, pose))
    return RenderedSequence(frames, K_color, tuple(color_size), K_depth, tuple(depth_size))


def _write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def _write_depth(path: Path, depth: np.ndarray, units_per_metre: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    units = np.clip(np.rint(depth * units_per_metre), 0, 65535).astype(np.uint16)
    assert cv2.imwrite(str(path), units)


def _intrinsic_4x4(K: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = to_integer_centres(K)
    out = np.eye(4)
    out[0, 0], out[1, 1], out[0, 2], out[1, 2] = fx, fy, cx, cy
    return out


def write_scannet(root: Path, seq: RenderedSequence, invalid: tuple[int, ...] = ()) -> Path:
    """SensReader export: color/<i>.jpg, depth/<i>.png (mm), pose/<i>.txt (-inf rows when invalid)."""
    for i, frame in enumerate(seq.frames):
        _write_image(root / "color" / f"{i}.jpg", frame.rgb)
        _write_depth(root / "depth" / f"{i}.png", frame.depth, 1000.0)
        (root / "pose").mkdir(parents=True, exist_ok=True)
        pose = np.full((4, 4), -np.inf) if i in invalid else frame.cam2world
        np.savetxt(root / "pose" / f"{i}.txt", pose, fmt="%.17g")
    (root / "intrinsic").mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", _intrinsic_4x4(seq.K_color), fmt="%.17g")
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", _intrinsic_4x4(seq.K_depth), fmt="%.17g")
    return root


def arkit_timestamps(n: int) -> tuple[list[float], list[float]]:
    """Frame timestamps and trajectory sample timestamps: samples sit 4 ms after each frame, and
    extra samples lie between frames (so a frame's nearest sample is its own, never equal to it)."""
    frames = [round(3000.0 + 0.1 * k, 3) for k in range(n)]
    samples = sorted([t + 0.004 for t in frames] + [t + 0.05 for t in frames])
    return frames, samples


def write_arkitscenes(root: Path, seq: RenderedSequence, video_id: str = "41069025") -> Path:
    """3dod layout: <id>/<id>_frames/{lowres_wide,lowres_depth,lowres_wide_intrinsics}, lowres_wide.traj."""
    folder = root / video_id / f"{video_id}_frames"
    frame_times, sample_times = arkit_timestamps(len(seq.frames))
    fx, fy, cx, cy = to_integer_centres(seq.K_depth)
    lines = []
    far = camera.look_at(np.array([9.0, 9.0, 9.0]), np.zeros(3))  # between-frame samples: elsewhere
    for t_sample in sample_times:
        k = min(range(len(frame_times)), key=lambda i: abs(frame_times[i] - t_sample))
        pose = seq.frames[k].cam2world if abs(frame_times[k] + 0.004 - t_sample) < 1e-9 else far
        world_to_camera = np.linalg.inv(pose)
        rvec, _ = cv2.Rodrigues(world_to_camera[:3, :3])
        values = [t_sample, *rvec.ravel(), *world_to_camera[:3, 3]]
        lines.append(" ".join(f"{v:.17g}" for v in values))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    for t, frame in zip(frame_times, seq.frames):
        name = f"{video_id}_{t:.3f}"
        rgb = cv2.resize(frame.rgb, seq.depth_size, interpolation=cv2.INTER_AREA)  # lowres_wide = depth grid
        _write_image(folder / "lowres_wide" / f"{name}.png", rgb)
        _write_depth(folder / "lowres_depth" / f"{name}.png", frame.depth, 1000.0)
        (folder / "lowres_wide_intrinsics").mkdir(parents=True, exist_ok=True)
        w, h = seq.depth_size
        (folder / "lowres_wide_intrinsics" / f"{name}.pincam").write_text(f"{w} {h} {fx!r} {fy!r} {cx!r} {cy!r}\n")
    return root / video_id


def matrix_to_quaternion_xyzw(R: np.ndarray) -> tuple[float, float, float, float]:
    """Scalar-last quaternion of a rotation matrix (Shepperd's method, for writing test files)."""
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
        w = (R[k, j] - R[j, k]) / s
        x, y, z = q
    return x, y, z, w


def write_tum(root: Path, seq: RenderedSequence, name: str = "rgbd_dataset_freiburg1_test") -> Path:
    """rgb.txt / depth.txt (depth 10 ms after colour), groundtruth.txt (tx ty tz qx qy qz qw) at
    samples 5 ms after each colour frame plus samples elsewhere in between; depth factor 5000."""
    folder = root / name
    rgb_lines, depth_lines, truth_lines = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
    for k, frame in enumerate(seq.frames):
        t = 1305031100.0 + 0.2 * k
        rgb_name, depth_name = f"rgb/{t:.6f}.png", f"depth/{t + 0.01:.6f}.png"
        rgb = cv2.resize(frame.rgb, seq.depth_size, interpolation=cv2.INTER_AREA)
        _write_image(folder / rgb_name, rgb)
        _write_depth(folder / depth_name, frame.depth, 5000.0)
        rgb_lines.append(f"{t:.6f} {rgb_name}")
        depth_lines.append(f"{t + 0.01:.6f} {depth_name}")
        for dt, pose in ((0.005, frame.cam2world), (0.1, np.eye(4))):
            qx, qy, qz, qw = matrix_to_quaternion_xyzw(pose[:3, :3])
            tx, ty, tz = pose[:3, 3]
            truth_lines.append(" ".join(f"{v:.17g}" for v in (t + dt, tx, ty, tz, qx, qy, qz, qw)))
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (folder / "groundtruth.txt").write_text("\n".join(truth_lines) + "\n")
    return folder


def write_frames_jsonl(root: Path, seq: RenderedSequence, depth_scale: float = 0.0005) -> Path:
    """Generic layout: frames.jsonl with project-convention K (colour) and K_depth."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, frame in enumerate(seq.frames):
        _write_image(root / "img" / f"{k:04d}.png", frame.rgb)
        _write_depth(root / "depth" / f"{k:04d}.png", frame.depth, 1.0 / depth_scale)
        lines.append(json.dumps({
            "frame_id": f"f{k:04d}", "image": f"img/{k:04d}.png", "depth": f"depth/{k:04d}.png",
            "depth_scale": depth_scale, "K": seq.K_color.tolist(), "K_depth": seq.K_depth.tolist(),
            "cam2world": frame.cam2world.tolist(), "timestamp": 0.5 * k,
        }))
    (root / "frames.jsonl").write_text("\n".join(lines) + "\n")
    return root

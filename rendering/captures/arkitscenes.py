"""ARKitScenes sequences in the raw / 3dod download layout (low-resolution wide camera).

A sequence folder ``<video_id>/`` (or its ``<video_id>_frames/`` in 3dod) holds:

* ``lowres_wide/<video_id>_<timestamp>.png`` colour, ``lowres_depth/<video_id>_<timestamp>.png``
  16-bit depth in millimetres (both 256x192);
* ``lowres_wide_intrinsics/<video_id>_<timestamp>.pincam``: one line ``w h fx fy cx cy``
  (integer pixel centres);
* ``lowres_wide.traj``: ``timestamp rx ry rz tx ty tz`` per line, the rotation as an angle-axis
  vector (radians) and the translation (metres) of the *world-to-camera* transform, in the camera
  frame the dataset projects its depth with (x right, y down, z forward).

Trajectory samples do not coincide with frame timestamps: each frame takes the sample nearest to
its timestamp, within ``max_pose_difference`` seconds.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rendering.captures.record import (
    CaptureError,
    CaptureFrame,
    CaptureSequence,
    from_integer_centres,
    require_sequence,
    valid_pose,
)
from rendering.captures.tum import nearest

DEPTH_SCALE = 0.001  # millimetres


def frames_folder(root: Path) -> Path | None:
    """The folder holding lowres_wide/ for a raw (``<id>/``) or 3dod (``<id>/<id>_frames/``) sequence."""
    root = Path(root)
    for folder in (root, root / f"{root.name}_frames"):
        if (folder / "lowres_wide").is_dir() and (folder / "lowres_wide.traj").is_file():
            return folder
    return None


def is_arkitscenes_sequence(folder: Path) -> bool:
    return frames_folder(folder) is not None


def angle_axis_pose_to_cam2world(rotation_vector: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """cam2world of a world-to-camera transform given as angle-axis rotation + translation."""
    rotation, _ = cv2.Rodrigues(np.asarray(rotation_vector, dtype=np.float64).reshape(3, 1))
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3], world_to_camera[:3, 3] = rotation, np.asarray(translation, dtype=np.float64)
    cam2world = np.eye(4)
    cam2world[:3, :3] = rotation.T
    cam2world[:3, 3] = -rotation.T @ world_to_camera[:3, 3]
    return cam2world


def read_trajectory(path: Path) -> np.ndarray:
    """(N, 7) rows of lowres_wide.traj sorted by timestamp, or an error naming the bad line."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 7:
            raise CaptureError(f"{path} line {number}: expected 7 numbers (timestamp rx ry rz tx ty tz), got {line!r}")
        rows.append(values)
    table = np.array(rows, dtype=np.float64).reshape(-1, 7)
    return table[np.argsort(table[:, 0], kind="stable")]


def read_pincam(path: Path) -> tuple[tuple[int, int], np.ndarray]:
    """((w, h), K) from a .pincam file."""
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError) as err:
        raise CaptureError(f"{path}: cannot read 'w h fx fy cx cy' ({err})") from None
    if len(values) != 6:
        raise CaptureError(f"{path}: expected 6 numbers 'w h fx fy cx cy', got {len(values)}")
    w, h, fx, fy, cx, cy = values
    return (int(round(w)), int(round(h))), from_integer_centres(fx, fy, cx, cy)


def _timestamp(path: Path, video_id: str) -> float | None:
    prefix = f"{video_id}_"
    if not path.stem.startswith(prefix):
        return None
    try:
        return float(path.stem[len(prefix):])
    except ValueError:
        return None


def read_arkitscenes(root: Path, max_pose_difference: float = 0.05) -> CaptureSequence:
    root = Path(root)
    folder = frames_folder(root)
    if folder is None:
        raise CaptureError(f"{root} is not an ARKitScenes sequence (needs lowres_wide/ and lowres_wide.traj, "
                           f"in it or in {root.name}_frames/)")
    video_id = root.name.removesuffix("_frames")
    trajectory = read_trajectory(folder / "lowres_wide.traj")
    images = sorted(folder.glob("lowres_wide/*.png"))
    dropped: dict[str, int] = {}
    stamped = []
    for image_path in images:
        t = _timestamp(image_path, video_id)
        if t is None:
            dropped["file name is not <video_id>_<timestamp>.png"] = dropped.get("file name is not <video_id>_<timestamp>.png", 0) + 1
        else:
            stamped.append((t, image_path))
    stamped.sort()
    frames: list[CaptureFrame] = []
    for t, image_path in stamped:
        depth_path = folder / "lowres_depth" / image_path.name
        pincam = folder / "lowres_wide_intrinsics" / f"{image_path.stem}.pincam"
        if not depth_path.is_file() or not pincam.is_file():
            dropped["missing depth or .pincam file"] = dropped.get("missing depth or .pincam file", 0) + 1
            continue
        if trajectory.shape[0] == 0:
            dropped["empty trajectory"] = dropped.get("empty trajectory", 0) + 1
            continue
        g = nearest(trajectory[:, 0], t)
        if abs(trajectory[g, 0] - t) > max_pose_difference:
            reason = f"no trajectory sample within {max_pose_difference} s"
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        pose = valid_pose(angle_axis_pose_to_cam2world(trajectory[g, 1:4], trajectory[g, 4:7]))
        if pose is None:
            dropped["invalid pose (NaN)"] = dropped.get("invalid pose (NaN)", 0) + 1
            continue
        size, K = read_pincam(pincam)
        frames.append(CaptureFrame(
            frame_id=f"{t:.3f}", image_path=image_path, depth_path=depth_path, depth_scale=DEPTH_SCALE,
            K_image=K, image_size=size, K_depth=K, depth_size=size, cam2world=pose, timestamp=t,
        ))
    return require_sequence(CaptureSequence("arkitscenes", video_id, root, tuple(frames), dropped), len(images))

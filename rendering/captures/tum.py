"""TUM RGB-D sequences (``rgbd_dataset_freiburg*``), in the layout the benchmark distributes.

* ``rgb.txt`` and ``depth.txt``: ``timestamp filename`` per line (``#`` comments);
* ``groundtruth.txt``: ``timestamp tx ty tz qx qy qz qw``: the colour camera's optical centre
  and orientation in the motion-capture world (camera-to-world; the quaternion's scalar is last);
* depth PNGs are 16-bit with 5000 units per metre.

Colour and depth frames are associated by nearest timestamp within ``max_difference`` seconds (the
benchmark's associate.py uses 0.02 s), and each pair gets the ground-truth pose nearest to the
colour timestamp within ``max_pose_difference``. Intrinsics are not in the folder: the
calibrated values of the three Kinects (``freiburg1/2/3``, integer pixel centres) or the
uncalibrated default are chosen by ``camera`` (``auto`` reads the folder name).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rendering.captures.record import (
    CaptureError,
    CaptureFrame,
    CaptureSequence,
    from_integer_centres,
    image_size,
    require_sequence,
    valid_pose,
)

DEPTH_FACTOR = 5000.0  # depth units per metre
# (fx, fy, cx, cy) of the benchmark's calibrated cameras and the ROS default (its documentation)
TUM_CAMERAS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}


def is_tum_sequence(folder: Path) -> bool:
    return all((Path(folder) / name).is_file() for name in ("rgb.txt", "depth.txt", "groundtruth.txt"))


def _rows(path: Path, columns: int) -> list[list[str]]:
    """Non-comment lines of a TUM list file split into ``columns`` fields, or an error naming the line."""
    if not path.is_file():
        raise CaptureError(f"TUM file {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != columns:
            raise CaptureError(f"{path} line {number}: expected {columns} fields, got {len(fields)}: {line!r}")
        rows.append(fields)
    return rows


def _float(value: str, path: Path, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CaptureError(f"{path}: {what} {value!r} is not a number") from None


def quaternion_xyzw_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """Rotation matrix of a (normalised) quaternion given scalar-last, as TUM and ROS write it."""
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion ({qx}, {qy}, {qz}, {qw}) has no direction")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def nearest(sorted_times: np.ndarray, t: float) -> int:
    """Index of the time in ``sorted_times`` nearest to ``t``."""
    i = int(np.searchsorted(sorted_times, t))
    if i == 0:
        return 0
    if i == len(sorted_times):
        return len(sorted_times) - 1
    return i if sorted_times[i] - t < t - sorted_times[i - 1] else i - 1


def tum_camera_for(folder: Path, camera: str) -> tuple[float, float, float, float]:
    if camera != "auto":
        if camera not in TUM_CAMERAS:
            raise CaptureError(f"unknown TUM camera {camera!r}; choose auto or one of {', '.join(TUM_CAMERAS)}")
        return TUM_CAMERAS[camera]
    match = re.search(r"freiburg([123])", Path(folder).name)
    return TUM_CAMERAS[f"freiburg{match.group(1)}"] if match else TUM_CAMERAS["default"]


def read_tum(root: Path, camera: str = "auto", max_difference: float = 0.02,
             max_pose_difference: float = 0.02,
             intrinsics: tuple[float, float, float, float] | None = None) -> CaptureSequence:
    """One TUM sequence; ``intrinsics`` (fx, fy, cx, cy, integer pixel centres) override ``camera``."""
    root = Path(root)
    if not is_tum_sequence(root):
        raise CaptureError(f"{root} is not a TUM RGB-D sequence (needs rgb.txt, depth.txt and groundtruth.txt)")
    K = from_integer_centres(*(intrinsics if intrinsics is not None else tum_camera_for(root, camera)))
    rgb = [(_float(t, root / "rgb.txt", "timestamp"), name) for t, name in _rows(root / "rgb.txt", 2)]
    depth = [(_float(t, root / "depth.txt", "timestamp"), name) for t, name in _rows(root / "depth.txt", 2)]
    truth_rows = _rows(root / "groundtruth.txt", 8)
    truth = np.array([[_float(v, root / "groundtruth.txt", "value") for v in row] for row in truth_rows]).reshape(-1, 8)
    depth.sort()
    truth = truth[np.argsort(truth[:, 0], kind="stable")]
    depth_times = np.array([t for t, _ in depth])
    dropped: dict[str, int] = {}
    frames: list[CaptureFrame] = []
    sizes = None
    used_depth: set[int] = set()

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for t, name in sorted(rgb):
        if depth_times.size == 0 or truth.shape[0] == 0:
            drop("no depth frame or ground-truth pose")
            continue
        d = nearest(depth_times, t)
        if abs(depth_times[d] - t) > max_difference or d in used_depth:
            drop(f"no depth frame within {max_difference} s")
            continue
        g = nearest(truth[:, 0], t)
        if abs(truth[g, 0] - t) > max_pose_difference:
            drop(f"no ground-truth pose within {max_pose_difference} s")
            continue
        tx, ty, tz, qx, qy, qz, qw = truth[g, 1:]
        try:
            rotation = quaternion_xyzw_to_matrix(qx, qy, qz, qw)
        except ValueError:
            drop("invalid pose (NaN or zero quaternion)")
            continue
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, (tx, ty, tz)
        pose = valid_pose(pose)
        if pose is None:
            drop("invalid pose (NaN or zero quaternion)")
            continue
        image_path, depth_path = root / name, root / depth[d][1]
        if not image_path.is_file() or not depth_path.is_file():
            drop("missing colour or depth file")
            continue
        used_depth.add(d)
        if sizes is None:
            sizes = (image_size(image_path, "TUM colour frame"), image_size(depth_path, "TUM depth frame"))
        frames.append(CaptureFrame(
            frame_id=f"{t:.6f}", image_path=image_path, depth_path=depth_path, depth_scale=1.0 / DEPTH_FACTOR,
            K_image=K, image_size=sizes[0], K_depth=K, depth_size=sizes[1], cam2world=pose, timestamp=t,
        ))
    return require_sequence(CaptureSequence("tum", root.name, root, tuple(frames), dropped), len(rgb))

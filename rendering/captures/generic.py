"""Any posed RGB-D capture, described by a ``frames.jsonl`` or ``frames.parquet`` in its folder.

One row per frame with the frame record's fields, in the project's conventions (OpenCV camera
frame, cam2world, K with pixel centres at +0.5, see rendering.camera):

``frame_id`` (text), ``image`` and ``depth`` (paths, relative to the file's folder), ``depth_scale``
(metres per depth unit), ``K`` (3x3 nested or 9 values row-major, for the image), optionally
``K_depth`` (when the depth map has other intrinsics), ``cam2world`` (4x4 or 16 values; null or
non-finite for a frame without a valid pose) and ``timestamp`` (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rendering.captures.record import CaptureError, CaptureFrame, CaptureSequence, image_size, require_sequence, valid_pose

FRAMES_FILES = ("frames.jsonl", "frames.parquet")
REQUIRED = ("frame_id", "image", "depth", "depth_scale", "K", "cam2world", "timestamp")


def frames_file(folder: Path) -> Path | None:
    for name in FRAMES_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def is_generic_sequence(folder: Path) -> bool:
    return frames_file(folder) is not None


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises several types for a bad file
            raise CaptureError(f"{path}: not a readable Parquet file ({err})") from None
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CaptureError(f"{path} line {number}: not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise CaptureError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _matrix(value: Any, n: int, where: str, name: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64).reshape(n, n)
    except (TypeError, ValueError):
        raise CaptureError(f"{where}: {name} must be {n}x{n} numbers (nested or flat), got {value!r}") from None
    return matrix


def read_generic(root: Path) -> CaptureSequence:
    root = Path(root)
    path = frames_file(root)
    if path is None:
        raise CaptureError(f"{root} has neither frames.jsonl nor frames.parquet")
    rows = _rows(path)
    frames: list[CaptureFrame] = []
    dropped: dict[str, int] = {}
    sizes = None
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        where = f"{path} row {number}"
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise CaptureError(f"{where}: missing field(s) {missing} (required: {', '.join(REQUIRED)})")
        frame_id = str(row["frame_id"])
        if frame_id in seen:
            raise CaptureError(f"{where}: frame_id {frame_id!r} appears twice")
        seen.add(frame_id)
        K = _matrix(row["K"], 3, where, "K")
        K_depth = _matrix(row["K_depth"], 3, where, "K_depth") if row.get("K_depth") is not None else K
        try:
            depth_scale = float(row["depth_scale"])
            timestamp = float(row["timestamp"])
        except (TypeError, ValueError):
            raise CaptureError(f"{where}: depth_scale and timestamp must be numbers") from None
        if not depth_scale > 0:
            raise CaptureError(f"{where}: depth_scale must be > 0, got {depth_scale}")
        pose = None if row["cam2world"] is None else valid_pose(_matrix(row["cam2world"], 4, where, "cam2world"))
        if pose is None:
            dropped["invalid pose (null, non-finite or not rigid)"] = dropped.get("invalid pose (null, non-finite or not rigid)", 0) + 1
            continue
        image_path, depth_path = path.parent / str(row["image"]), path.parent / str(row["depth"])
        if not image_path.is_file() or not depth_path.is_file():
            raise CaptureError(f"{where}: image {image_path} or depth {depth_path} does not exist")
        if sizes is None:
            sizes = (image_size(image_path, "colour frame"), image_size(depth_path, "depth frame"))
        frames.append(CaptureFrame(
            frame_id=frame_id, image_path=image_path, depth_path=depth_path, depth_scale=depth_scale,
            K_image=K, image_size=sizes[0], K_depth=K_depth, depth_size=sizes[1], cam2world=pose, timestamp=timestamp,
        ))
    frames.sort(key=lambda f: f.timestamp)
    return require_sequence(CaptureSequence("frames", root.name, root, tuple(frames), dropped), len(rows))

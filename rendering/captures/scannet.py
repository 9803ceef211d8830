"""ScanNet sequences as exported by its SensReader (``python reader.py --export_*``).

Layout of one scene folder ``<scene>/``:

* ``color/<i>.jpg`` colour frames (1296x968 in ScanNet v2), ``depth/<i>.png`` 16-bit depth in
  millimetres (640x480), ``pose/<i>.txt`` camera-to-world 4x4 of frame ``i``, written as ``-inf``
  rows where tracking was lost;
* ``intrinsic/intrinsic_color.txt`` and ``intrinsic/intrinsic_depth.txt``: 4x4 matrices whose
  upper-left 3x3 is K (OpenCV's integer pixel centres) for the colour and the depth image.

The export writes no timestamps; a frame's timestamp is its index. The pose's camera frame is
OpenCV's already (x right, y down, z forward), so it is used as it is.
"""

from __future__ import annotations

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

DEPTH_SCALE = 0.001  # millimetres


def is_scannet_sequence(folder: Path) -> bool:
    return all((Path(folder) / name).is_dir() for name in ("color", "depth", "pose", "intrinsic"))


def _matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise CaptureError(f"{path}: not a whitespace-separated numeric matrix ({err})") from None
    if values.shape != shape:
        raise CaptureError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got {values.shape[0]}x{values.shape[1]}")
    return values


def _intrinsics(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CaptureError(f"ScanNet intrinsics {path} do not exist")
    K = _matrix(path, (4, 4))[:3, :3]
    return from_integer_centres(K[0, 0], K[1, 1], K[0, 2], K[1, 2])


def read_scannet(root: Path) -> CaptureSequence:
    """One exported ScanNet scene; frames with an invalid pose or missing files are dropped and counted."""
    root = Path(root)
    if not is_scannet_sequence(root):
        raise CaptureError(f"{root} is not a ScanNet export (needs color/, depth/, pose/ and intrinsic/)")
    K_image = _intrinsics(root / "intrinsic" / "intrinsic_color.txt")
    K_depth = _intrinsics(root / "intrinsic" / "intrinsic_depth.txt")
    poses = sorted((root / "pose").glob("*.txt"), key=lambda p: (len(p.stem), p.stem))
    poses = [p for p in poses if p.stem.isdigit()]
    dropped: dict[str, int] = {}
    frames: list[CaptureFrame] = []
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None
    for pose_path in poses:
        index = pose_path.stem
        image_path, depth_path = root / "color" / f"{index}.jpg", root / "depth" / f"{index}.png"
        if not image_path.is_file() or not depth_path.is_file():
            dropped["missing colour or depth file"] = dropped.get("missing colour or depth file", 0) + 1
            continue
        with np.errstate(invalid="ignore"):
            pose = valid_pose(_matrix(pose_path, (4, 4)))
        if pose is None:
            dropped["invalid pose (-inf/NaN or not rigid)"] = dropped.get("invalid pose (-inf/NaN or not rigid)", 0) + 1
            continue
        if sizes is None:
            sizes = (image_size(image_path, "ScanNet colour frame"), image_size(depth_path, "ScanNet depth frame"))
        frames.append(CaptureFrame(
            frame_id=index, image_path=image_path, depth_path=depth_path, depth_scale=DEPTH_SCALE,
            K_image=K_image, image_size=sizes[0], K_depth=K_depth, depth_size=sizes[1],
            cam2world=pose, timestamp=float(int(index)),
        ))
    sequence = CaptureSequence("scannet", root.name, root, tuple(frames), dropped)
    return require_sequence(sequence, len(poses))

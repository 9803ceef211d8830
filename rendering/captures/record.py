"""One frame record for every posed RGB-D capture layout, and the few conventions readers share.

Each reader (ScanNet, ARKitScenes, TUM RGB-D, generic frames files) turns its dataset's own files
into a :class:`CaptureSequence` of :class:`CaptureFrame` records in the project's conventions
(rendering.camera): OpenCV camera frame, ``cam2world`` 4x4 float64, ``K`` in pixels with pixel
``(c, r)`` centred at ``(c + 0.5, r + 0.5)``, depth as z-depth in metres.

Pixel centres: ScanNet, ARKitScenes and TUM publish intrinsics in OpenCV's calibration convention,
where pixel ``(c, r)`` is centred at ``(c, r)`` (TUM's default ``cx = 319.5`` for 640 px wide
images is that centre). :func:`from_integer_centres` adds the half pixel, once, in every reader
of those datasets; generic frames files give ``K`` in the project's convention already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rendering.camera import check_pose


class CaptureError(ValueError):
    """A capture folder does not have its dataset's layout, or holds nothing usable (message names it)."""


@dataclass(frozen=True)
class CaptureFrame:
    """A posed RGB-D frame: where its files are and how to read them.

    ``K_image`` belongs to the colour image (``image_size``), ``K_depth`` to the depth map
    (``depth_size``); they differ when the sensor records them at different resolutions
    (ScanNet). The pose is the depth camera's; readers assume colour and depth are registered
    (the same optical centre and orientation), as these datasets' exports state.
    """

    frame_id: str
    image_path: Path
    depth_path: Path
    depth_scale: float  # metres per stored depth unit (ScanNet/ARKit 0.001, TUM 1/5000)
    K_image: np.ndarray
    image_size: tuple[int, int]  # (width, height)
    K_depth: np.ndarray
    depth_size: tuple[int, int]
    cam2world: np.ndarray
    timestamp: float  # seconds (ScanNet's export has none: the frame index is used)


@dataclass(frozen=True)
class CaptureSequence:
    """The frames of one capture with a valid pose, in time order, and why others were dropped."""

    dataset: str
    sequence_id: str
    root: Path
    frames: tuple[CaptureFrame, ...]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> frames

    @property
    def where(self) -> str:
        return f"{self.dataset} sequence {self.sequence_id!r} at {self.root}"


def from_integer_centres(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """K in the project's convention from intrinsics whose pixel centres are integers."""
    return np.array([[fx, 0.0, cx + 0.5], [0.0, fy, cy + 0.5], [0.0, 0.0, 1.0]], dtype=np.float64)


def to_integer_centres(K: np.ndarray) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in OpenCV's integer-centre convention (the inverse of from_integer_centres)."""
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) - 0.5, float(K[1, 2]) - 0.5


def valid_pose(matrix: np.ndarray) -> np.ndarray | None:
    """The pose as float64 4x4 when it is finite and rigid, else None (ScanNet marks lost tracking
    with -inf rows; some exports write NaN)."""
    try:
        return check_pose(matrix)
    except ValueError:
        return None


def image_size(path: Path, what: str) -> tuple[int, int]:
    """(width, height) of an image file, read once per sequence."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CaptureError(f"{what} {path} cannot be read as an image")
    return int(image.shape[1]), int(image.shape[0])


def require_sequence(sequence: CaptureSequence, total: int) -> CaptureSequence:
    """Refuse a sequence none of whose ``total`` frames has a valid pose, naming it and why."""
    if not sequence.frames:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(sequence.dropped.items())) or "no frames found"
        raise CaptureError(f"{sequence.where}: no frame has a valid pose ({total} frames: {reasons})")
    return sequence


def load_depth(frame: CaptureFrame) -> np.ndarray:
    """The frame's depth in metres, float32, 0 where the sensor has no value."""
    units = cv2.imread(str(frame.depth_path), cv2.IMREAD_UNCHANGED)
    if units is None:
        raise CaptureError(f"frame {frame.frame_id}: depth file {frame.depth_path} cannot be read")
    if units.ndim != 2 or units.dtype not in (np.uint16, np.float32):
        raise CaptureError(
            f"frame {frame.frame_id}: depth file {frame.depth_path} must be a single-channel 16-bit or float "
            f"image, got {units.dtype} {units.shape}"
        )
    if (units.shape[1], units.shape[0]) != tuple(frame.depth_size):
        raise CaptureError(
            f"frame {frame.frame_id}: depth file {frame.depth_path} is {units.shape[1]}x{units.shape[0]}, "
            f"the sequence's depth maps are {frame.depth_size[0]}x{frame.depth_size[1]}"
        )
    depth = (units.astype(np.float64) * frame.depth_scale).astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def load_rgb(frame: CaptureFrame) -> np.ndarray:
    """The frame's colour image as RGB uint8."""
    bgr = cv2.imread(str(frame.image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CaptureError(f"frame {frame.frame_id}: image file {frame.image_path} cannot be read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_in_depth_camera(frame: CaptureFrame, rgb: np.ndarray) -> np.ndarray:
    """The colour image resampled onto the depth camera's pixel grid (``K_depth``, ``depth_size``).

    Registered pinhole cameras differ only in their intrinsics, so the map between the two grids
    is the affine ``K_depth @ inv(K_image)``; it is the identity when the two are the same.
    """
    if np.array_equal(frame.K_image, frame.K_depth) and tuple(frame.image_size) == tuple(frame.depth_size):
        return rgb
    K_image = frame.K_image
    scale = frame.K_depth[0, 0] / K_image[0, 0], frame.K_depth[1, 1] / K_image[1, 1]
    if scale[0] < 0.9 or scale[1] < 0.9:  # shrink with area averaging first (warpAffine would alias)
        width, height = rgb.shape[1], rgb.shape[0]
        size = (max(1, round(width * scale[0])), max(1, round(height * scale[1])))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        K_image = np.diag([size[0] / width, size[1] / height, 1.0]) @ K_image
    A = np.vstack([(frame.K_depth @ np.linalg.inv(K_image))[:2], [0.0, 0.0, 1.0]])
    # cv2 maps pixel indices (centres at integers): shift into and out of our +0.5 convention.
    shift_in = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    shift_out = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    M = (shift_out @ A @ shift_in)[:2]
    return cv2.warpAffine(rgb, M, tuple(frame.depth_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

"""Camera model: OpenCV pinhole intrinsics, cam2world poses, look-at and orientation noise.

Conventions (the single source of truth for the whole project):

* Camera frame is OpenCV's: +x right, +y down, +z forward (optical axis).
* ``cam2world`` is a 4x4 float64 matrix mapping homogeneous camera-frame points to world points.
* World frame is the scene's own; glTF and our procedural scenes are +Y up.
* Pixel coordinates are continuous: pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)`` and
  its centre is at ``(col + 0.5, row + 0.5)``. ``K`` maps a camera-frame point to these continuous
  coordinates, so the principal point of a ``W x H`` image is ``(W/2, H/2)``.
* Depth images hold z-depth in metres (distance along the optical axis), 0 where nothing was hit.

Habitat's camera frame (+x right, +y up, -z forward) and its (w, x, y, z) quaternions are handled in
:mod:`rendering.backends.habitat.frame`, nowhere else.
"""

from __future__ import annotations

import math

import numpy as np

WORLD_UP = np.array([0.0, 1.0, 0.0])


def intrinsics_from_fov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Square-pixel pinhole intrinsics for an image whose *horizontal* field of view is ``hfov_deg``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"horizontal FOV must be in (0, 180) degrees, got {hfov_deg}")
    focal = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array(
        [[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def check_intrinsics(K: np.ndarray, what: str = "K", allow_skew: bool = False) -> np.ndarray:
    """Return ``K`` as float64 3x3, or raise naming what is wrong (shape, NaN, focal length, form).

    ``allow_skew``: the embedded renderer projects a skewed K exactly; code that unprojects with
    fx, fy, cx, cy alone (co-visibility, Habitat's camera) must refuse one.
    """
    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"{what}: expected a 3x3 matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{what}: intrinsics contain NaN or infinite values")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"{what}: focal lengths must be positive, got fx={k[0, 0]}, fy={k[1, 1]}")
    if k[1, 0] != 0 or not np.all(np.abs(k[2] - _PINHOLE_LAST_ROW) <= _PINHOLE_LAST_ROW_TOLERANCE):
        raise ValueError(f"{what}: not a pinhole matrix (expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]]), got {k.tolist()}")
    if not allow_skew and k[0, 1] != 0:
        raise ValueError(f"{what}: expected a pinhole K without skew, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "
                         f"got skew {k[0, 1]}")
    return k


def check_pose(cam2world: np.ndarray, what: str = "cam2world") -> np.ndarray:
    """Return ``cam2world`` as float64 4x4, or raise naming what is wrong (NaN, shape, not rigid)."""
    pose = np.asarray(cam2world, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"{what}: expected a 4x4 matrix, got shape {pose.shape}")
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"{what}: pose contains NaN or infinite values")
    rot = pose[:3, :3]
    if not np.all(np.abs(rot @ rot.T - _IDENTITY3) <= _ORTHONORMAL_TOLERANCE) or np.linalg.det(rot) < 0:
        raise ValueError(f"{what}: rotation part is not a proper rotation matrix")
    if not np.all(np.abs(pose[3] - _LAST_ROW) <= _LAST_ROW_TOLERANCE):
        raise ValueError(f"{what}: last row must be [0, 0, 0, 1], got {pose[3].tolist()}")
    return pose


# check_pose's tests are np.allclose's (|a - b| <= atol + rtol |b|, rtol 1e-5) written out:
# renderers call it on every frame, and allclose's generic machinery costs ~60 us a call.
_IDENTITY3 = np.eye(3)
_ORTHONORMAL_TOLERANCE = 1e-5 + 1e-5 * _IDENTITY3  # atol 1e-5
_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_LAST_ROW_TOLERANCE = 1e-8 + 1e-5 * _LAST_ROW  # allclose's default atol 1e-8
_PINHOLE_LAST_ROW = np.array([0.0, 0.0, 1.0])  # check_intrinsics, the same way
_PINHOLE_LAST_ROW_TOLERANCE = 1e-8 + 1e-5 * _PINHOLE_LAST_ROW


def pose_from_rotation_translation(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = WORLD_UP) -> np.ndarray:
    """OpenCV cam2world at ``eye`` whose optical axis points at ``target`` with image-up along ``up``."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(forward)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"look_at: target {target} coincides with eye {eye}")
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down: any horizontal right will do
        right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return pose_from_rotation_translation(np.stack([right, down, forward], axis=1), eye)


def yaw_pitch_roll_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera rotation of a camera in a +Y-up world (angles in radians).

    ``yaw`` turns about world +Y (0 looks along world -Z, positive turns left, as Habitat does),
    ``pitch`` tilts the optical axis up (positive) or down, ``roll`` turns about the optical axis.
    """
    cy, sy = math.cos(yaw), math.sin(yaw)
    # Level camera looking along -Z with yaw 0: columns are camera x (right), y (down), z (forward).
    base = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return r_yaw @ base @ camera_frame_noise(0.0, pitch, roll)


def camera_frame_noise(pan: float, tilt: float, roll: float) -> np.ndarray:
    """Rotation in the OpenCV camera frame: pan about camera -y (positive turns left), tilt about
    camera -x (positive looks up), roll about +z. Applied as ``R_world_cam @ noise``."""
    cp, sp = math.cos(pan), math.sin(pan)
    ct, st = math.cos(tilt), math.sin(tilt)
    cr, sr = math.cos(roll), math.sin(roll)
    r_pan = np.array([[cp, 0.0, -sp], [0.0, 1.0, 0.0], [sp, 0.0, cp]])
    r_tilt = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]])
    r_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return r_pan @ r_tilt @ r_roll


def apply_orientation_noise(cam2world: np.ndarray, pan: float, tilt: float, roll: float) -> np.ndarray:
    """Perturb a pose's orientation in its own camera frame (radians); the position is kept."""
    pose = np.array(cam2world, dtype=np.float64)
    pose[:3, :3] = pose[:3, :3] @ camera_frame_noise(pan, tilt, roll)
    return pose


def world_to_camera(points_world: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """(N, 3) world points -> (N, 3) OpenCV camera-frame points."""
    rot = cam2world[:3, :3]
    return (np.asarray(points_world) - cam2world[:3, 3]) @ rot


def project(points_world: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) world points; returns continuous pixel coords (N, 2) and z-depth (N,).

    Points behind the camera get NaN pixel coordinates; their depth is returned as is (<= 0).
    """
    cam = world_to_camera(points_world, cam2world)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z[:, None]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    uv[z <= 0] = np.nan
    return uv, z


def pixel_rays(width: int, height: int, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame rays through pixel centres, scaled so that z == 1."""
    cols = np.arange(width, dtype=np.float64) + 0.5
    rows = np.arange(height, dtype=np.float64) + 0.5
    u, v = np.meshgrid(cols, rows)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def unproject_depth(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """(H, W) z-depth -> (H, W, 3) world points (points with depth 0 are meaningless; mask them)."""
    height, width = depth.shape
    cam = pixel_rays(width, height, K) * depth[..., None].astype(np.float64)
    return cam @ cam2world[:3, :3].T + cam2world[:3, 3]

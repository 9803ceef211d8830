"""Exact downstream ground truth from a rendered pair: depth, optical flow 1->2, relative pose.

The corpus's val split holds scenes never used for pretraining; every pair there carries
z-depth, intrinsics and OpenCV cam2world poses, so for a static scene the flow of view 1 -> view 2
and the relative pose follow from geometry alone.

* Flow: each valid pixel centre of view 1 is unprojected with its depth, moved into camera 2 and
  projected; flow = (position in view 2) - (pixel centre in view 1), in pixels (x, y).
* Covisible mask: the pixel lands inside view 2, in front of camera 2, and agrees with view 2's
  depth at the nearest pixel within max(abs_tol, rel_tol * depth) -- the same occlusion test and
  tolerances as :func:`rendering.covisibility.reprojection_covisibility`, so the mask's pixel
  count / (H*W) equals that function's 1->2 score.
* Relative pose: ``T_21 = inv(cam2world2) @ cam2world1`` maps camera-1 points to camera-2 points,
  ``x2 = R x1 + t`` (the essential-matrix convention); ``t`` is compared by direction only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rendering.camera import check_pose, pixel_rays
from rendering.covisibility import DEFAULT_ABS_TOLERANCE_M, DEFAULT_REL_TOLERANCE, covisible_pixels


MIN_BASELINE_M = 1e-3  # below this the translation direction of a pair is undefined


@dataclass(frozen=True)
class PairSample:
    """One decoded pair of the shard schema (rendering.shards; README "Formats"), depths in metres."""

    key: str
    scene_id: str
    img1: np.ndarray  # (H, W, 3) uint8
    img2: np.ndarray
    depth1: np.ndarray  # (H, W) float32 metres, 0 invalid
    depth2: np.ndarray
    K1: np.ndarray  # 3x3 float64
    K2: np.ndarray
    cam2world1: np.ndarray  # 4x4 float64 OpenCV
    cam2world2: np.ndarray

    def __post_init__(self) -> None:
        for name in ("img1", "img2"):
            img = getattr(self, name)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"pair {self.key}: {name} must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
        for name, img in (("depth1", self.img1), ("depth2", self.img2)):
            depth = getattr(self, name)
            if depth.shape != img.shape[:2]:
                raise ValueError(f"pair {self.key}: {name} shape {depth.shape} != image {img.shape[:2]}")
            if not np.all(np.isfinite(depth)) or np.any(depth < 0):
                raise ValueError(f"pair {self.key}: {name} has NaN, infinite or negative values")
        for name in ("K1", "K2"):
            K = np.asarray(getattr(self, name))
            if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise ValueError(f"pair {self.key}: {name} is not a valid 3x3 intrinsics matrix")
        check_pose(self.cam2world1, f"pair {self.key}: cam2world1")
        check_pose(self.cam2world2, f"pair {self.key}: cam2world2")


def pair_from_arrays(
    key: str,
    meta: dict,
    img1: np.ndarray,
    img2: np.ndarray,
    depth1_raw: np.ndarray,
    depth2_raw: np.ndarray,
) -> PairSample:
    """Build a :class:`PairSample` from decoded shard members (uint16 depth x meta's depth_scale)."""
    try:
        scale = float(meta["depth_scale"])
        K1 = np.asarray(meta["K1"], dtype=np.float64)
        K2 = np.asarray(meta["K2"], dtype=np.float64)
        pose1 = np.asarray(meta["cam2world1"], dtype=np.float64)
        pose2 = np.asarray(meta["cam2world2"], dtype=np.float64)
        scene = str(meta["scene_id"])
    except KeyError as exc:
        raise ValueError(f"pair {key}: meta.json lacks {exc.args[0]!r}") from exc
    if not scale > 0:
        raise ValueError(f"pair {key}: depth_scale must be > 0, got {scale}")
    for name, raw in (("depth1", depth1_raw), ("depth2", depth2_raw)):
        if raw.dtype != np.uint16:
            raise ValueError(f"pair {key}: {name}.png must be uint16, got {raw.dtype}")
    return PairSample(
        key=key,
        scene_id=scene,
        img1=img1,
        img2=img2,
        depth1=depth1_raw.astype(np.float32) * np.float32(scale),
        depth2=depth2_raw.astype(np.float32) * np.float32(scale),
        K1=K1,
        K2=K2,
        cam2world1=pose1,
        cam2world2=pose2,
    )


def optical_flow(
    depth1: np.ndarray,
    K1: np.ndarray,
    cam2world1: np.ndarray,
    depth2: np.ndarray,
    K2: np.ndarray,
    cam2world2: np.ndarray,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE_M,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Flow view 1 -> view 2 (H, W, 2) float32 and the covisible mask (H, W) bool.

    Flow is defined (finite) wherever view 1 has depth and the point is in front of camera 2;
    elsewhere it is NaN. Only covisible pixels are exact correspondences: train and score there.
    """
    depth1 = np.asarray(depth1)
    depth2 = np.asarray(depth2)
    if depth1.ndim != 2 or depth2.ndim != 2:
        raise ValueError(f"optical_flow: expected (H, W) depths, got {depth1.shape} and {depth2.shape}")
    pose1 = check_pose(cam2world1, "cam2world1")
    pose2 = check_pose(cam2world2, "cam2world2")
    K1 = np.asarray(K1, np.float64)
    covisible, u2, v2, z2 = covisible_pixels(
        depth1, K1, pose1, depth2, np.asarray(K2, np.float64), pose2, abs_tolerance, rel_tolerance
    )
    height, width = depth1.shape
    rays = pixel_rays(width, height, K1)  # back to the pixel centres of view 1
    u1 = rays[..., 0] * K1[0, 0] + K1[0, 2]
    v1 = rays[..., 1] * K1[1, 1] + K1[1, 2]
    with np.errstate(invalid="ignore"):
        defined = (depth1 > 0) & (z2 > 0)
    flow = np.where(defined[..., None], np.stack([u2 - u1, v2 - v1], axis=-1), np.nan)
    return flow.astype(np.float32), covisible


def relative_pose(cam2world1: np.ndarray, cam2world2: np.ndarray) -> np.ndarray:
    """``T_21`` (4x4): camera-1 coordinates -> camera-2 coordinates (x2 = R x1 + t)."""
    pose1 = check_pose(cam2world1, "cam2world1")
    pose2 = check_pose(cam2world2, "cam2world2")
    return np.linalg.inv(pose2) @ pose1


def pair_flow(pair: PairSample) -> tuple[np.ndarray, np.ndarray]:
    return optical_flow(pair.depth1, pair.K1, pair.cam2world1, pair.depth2, pair.K2, pair.cam2world2)


def warp_by_flow(image2: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image2`` at ``p + flow(p)`` for every pixel ``p`` of view 1 (bilinear).

    Pixels whose flow is NaN or leads outside view 2 come back as 0.
    """
    import cv2

    height, width = flow.shape[:2]
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    # Flow is between continuous coordinates; cv2.remap indexes pixel centres by integers, so the
    # +0.5 offsets of both ends cancel.
    map_x = np.nan_to_num(cols + flow[..., 0], nan=-1e6).astype(np.float32)
    map_y = np.nan_to_num(rows + flow[..., 1], nan=-1e6).astype(np.float32)
    return cv2.remap(image2, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_pair(pair: PairSample, top: int, left: int, size: int) -> PairSample:
    """The same square window of both views; K's principal point moves, poses stay.

    Cropping both views at the same offset leaves the flow of every kept pixel unchanged.
    """
    height, width = pair.depth1.shape
    if not (0 <= top and 0 <= left and top + size <= height and left + size <= width and size > 0):
        raise ValueError(f"pair {pair.key}: crop {size} at ({top}, {left}) does not fit in {width}x{height}")
    window = (slice(top, top + size), slice(left, left + size))

    def shift(K: np.ndarray) -> np.ndarray:
        K = np.array(K, dtype=np.float64)
        K[0, 2] -= left
        K[1, 2] -= top
        return K

    return PairSample(
        key=pair.key,
        scene_id=pair.scene_id,
        img1=np.ascontiguousarray(pair.img1[window]),
        img2=np.ascontiguousarray(pair.img2[window]),
        depth1=np.ascontiguousarray(pair.depth1[window]),
        depth2=np.ascontiguousarray(pair.depth2[window]),
        K1=shift(pair.K1),
        K2=shift(pair.K2),
        cam2world1=pair.cam2world1,
        cam2world2=pair.cam2world2,
    )


def swapped(pair: PairSample) -> PairSample:
    return PairSample(
        key=pair.key + "-swap", scene_id=pair.scene_id, img1=pair.img2, img2=pair.img1,
        depth1=pair.depth2, depth2=pair.depth1, K1=pair.K2, K2=pair.K1,
        cam2world1=pair.cam2world2, cam2world2=pair.cam2world1,
    )


def rotation_angle_deg(cam2world1: np.ndarray, cam2world2: np.ndarray) -> float:
    """Angle of the relative rotation between the two cameras, degrees."""
    R = relative_pose(cam2world1, cam2world2)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))

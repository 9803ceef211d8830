"""Co-visibility of two depth views: how much of each view the other one sees.

Two scores (docs/sampling.md):

* ``reprojection`` (default): every valid pixel of the source view is unprojected, moved into the
  other camera and projected. It counts as co-visible when it lands inside the other image, in
  front of its camera, and agrees with the other view's depth at the nearest pixel within
  ``max(abs_tolerance, rel_tolerance * depth)`` -- the occlusion test. Nearest-pixel sampling on a
  surface seen obliquely by the target camera is off by up to half a pixel footprint times the
  tangent of the incidence angle: at 256 px / 60 deg a pixel subtends ~0.004 rad, so 5% of depth
  covers surfaces up to ~85 deg from frontal (~77 deg at 48 px). The 5 cm floor matches croco_nn's
  radius and covers close-range surfaces where 5% would be sub-millimetre.
* ``croco_nn``: CroCo's own metric, a 3-D nearest-neighbour test within 5 cm between the two views'
  world point clouds. It ignores occlusion and needs a k-d tree per check; kept as the baseline.

Both return :class:`rendering.pair.CovisScores` (both directions, normalised by H*W and by the
source view's valid pixels).
"""

from __future__ import annotations

from concurrent.futures import Executor
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

from rendering.camera import check_intrinsics, check_pose, pixel_rays, unproject_depth
from rendering.pair import CovisScores

CovisMethod = Literal["reprojection", "croco_nn"]

DEFAULT_ABS_TOLERANCE_M = 0.05
DEFAULT_REL_TOLERANCE = 0.05
DEFAULT_NN_RADIUS_M = 0.05


def _check_depth(depth: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(depth)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{what}: expected a non-empty (H, W) depth map, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what}: expected float depth in metres, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: depth contains NaN or infinite values")
    if np.any(arr < 0):
        raise ValueError(f"{what}: depth has negative values (0 marks invalid pixels)")
    return arr


def _check_intrinsics(K: np.ndarray, what: str) -> np.ndarray:
    """Unprojection here uses fx, fy, cx, cy only: a skewed K is refused, not silently misread."""
    return check_intrinsics(K, what, allow_skew=False)


def _check_inputs(depth1, depth2, K1, K2, pose1, pose2, check: bool = True):
    if not check:  # trusted callers (the sampler passes renderer output and poses it just built)
        return (
            np.asarray(depth1),
            np.asarray(depth2),
            np.asarray(K1, dtype=np.float64),
            np.asarray(K2, dtype=np.float64),
            np.asarray(pose1, dtype=np.float64),
            np.asarray(pose2, dtype=np.float64),
        )
    return (
        _check_depth(depth1, "depth1"),
        _check_depth(depth2, "depth2"),
        _check_intrinsics(K1, "K1"),
        _check_intrinsics(K2, "K2"),
        check_pose(pose1, "cam2world1"),
        check_pose(pose2, "cam2world2"),
    )


def _valid_world_points(depth: np.ndarray, K: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return unproject_depth(depth, K, pose)[depth > 0]


@lru_cache(maxsize=32)
def _separable_rays(width: int, height: int, fx: float, fy: float, cx: float, cy: float):
    """Ray x per column (1, W) and ray y per row (H, 1), in the project's pixel-centre convention."""
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    ray_x = pixel_rays(width, 1, K)[0, :, 0][None, :]
    ray_y = pixel_rays(1, height, K)[:, 0, 1][:, None]
    ray_x.setflags(write=False)
    ray_y.setflags(write=False)
    return ray_x, ray_y


def reproject_depth(
    depth: np.ndarray, K_src: np.ndarray, pose_src: np.ndarray, K_dst: np.ndarray, pose_dst: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each source pixel's surface point lands in the destination camera.

    Returns continuous pixel coordinates ``u``, ``v`` and z-depth ``z`` in the destination view,
    each (H, W) like ``depth`` (meaningless where ``depth`` is 0 or ``z <= 0``). Equivalent to
    ``camera.project(camera.unproject_depth(...))`` -- a test holds them equal -- but folds
    unprojection, the relative pose and ``K_dst`` into one 3x3 map applied with separable
    row/column terms, so a 256x256 view takes ~1 ms instead of two tall (N, 3) @ (3, 3) products.
    """
    height, width = depth.shape
    ray_x, ray_y = _separable_rays(width, height, *(float(K_src[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2))))
    src_to_dst = np.linalg.inv(pose_dst) @ pose_src
    A = K_dst @ src_to_dst[:3, :3]
    b = K_dst @ src_to_dst[:3, 3]
    # float32 keeps ~1e-6 m at 10 m, far below the occlusion tolerance, and halves memory traffic.
    d = depth.astype(np.float32, copy=False)
    h = [
        d * (A[k, 0] * ray_x + A[k, 1] * ray_y + A[k, 2]).astype(np.float32) + np.float32(b[k])
        for k in range(3)
    ]
    z = h[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return h[0] / z, h[1] / z, z


def _landing_pixels(
    src_depth: np.ndarray, src_K: np.ndarray, src_pose: np.ndarray, dst_K: np.ndarray, dst_pose: np.ndarray,
    dst_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(hit, u, v, z): which valid source pixels land inside the destination image, in front, and
    where every source pixel lands (:func:`reproject_depth`)."""
    u, v, z = reproject_depth(src_depth, src_K, src_pose, dst_K, dst_pose)
    height, width = dst_shape
    with np.errstate(invalid="ignore"):
        hit = (src_depth > 0) & (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return hit, u, v, z


def frustum_fraction(
    src_depth: np.ndarray,
    src_K: np.ndarray,
    src_pose: np.ndarray,
    dst_K: np.ndarray,
    dst_pose: np.ndarray,
    dst_width: int,
    dst_height: int,
) -> float:
    """Fraction of the source's H*W pixels whose surface point falls inside the destination view.

    Needs no destination depth, and bounds the source->destination ``reprojection`` H*W score from
    above (that score further requires the depths to agree), so a sampler can reject a candidate
    pose before rendering it without changing which pairs are accepted.
    """
    src_depth = _check_depth(src_depth, "src_depth")
    hit, _, _, _ = _landing_pixels(
        src_depth,
        _check_intrinsics(src_K, "src_K"),
        check_pose(src_pose, "src_pose"),
        _check_intrinsics(dst_K, "dst_K"),
        check_pose(dst_pose, "dst_pose"),
        (int(dst_height), int(dst_width)),
    )
    return int(np.count_nonzero(hit)) / src_depth.size


def covisible_pixels(
    src_depth: np.ndarray,
    src_K: np.ndarray,
    src_pose: np.ndarray,
    dst_depth: np.ndarray,
    dst_K: np.ndarray,
    dst_pose: np.ndarray,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE_M,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(covisible, u, v, z), each (H, W) like ``src_depth``: which source pixels the destination
    view sees (inside it, in front of it, and agreeing with its depth at the landing pixel within
    max(abs_tolerance, rel_tolerance * depth)), and where every source pixel lands
    (:func:`reproject_depth`). Inputs are trusted: the public entry points check them."""
    hit, u, v, z = _landing_pixels(src_depth, src_K, src_pose, dst_K, dst_pose, dst_depth.shape)
    # pixel (c, r) covers [c, c+1) x [r, r+1): the floor of a landing point is its nearest centre;
    # where hit, u and v are >= 0, so truncation is the floor. A flat int32 index and take() cost a
    # third of 2-D fancy indexing on 640x480 views (the miner's case); misses read pixel 0 and are
    # masked out by hit.
    width = dst_depth.shape[1]
    with np.errstate(invalid="ignore"):
        flat = v.astype(np.int32) * np.int32(width) + u.astype(np.int32)
    flat[~hit] = 0
    seen = np.ascontiguousarray(dst_depth).reshape(-1).take(flat)
    tolerance = np.maximum(np.float32(abs_tolerance), np.float32(rel_tolerance) * seen)
    with np.errstate(invalid="ignore"):
        covisible = hit & (seen > 0) & (np.abs(z - seen) <= tolerance)
    return covisible, u, v, z


def _scores(count12: int, count21: int, depth1: np.ndarray, depth2: np.ndarray) -> CovisScores:
    valid1 = int(np.count_nonzero(depth1 > 0))
    valid2 = int(np.count_nonzero(depth2 > 0))
    return CovisScores(
        one_to_two_hw=count12 / depth1.size,
        two_to_one_hw=count21 / depth2.size,
        one_to_two_valid=count12 / valid1 if valid1 else 0.0,
        two_to_one_valid=count21 / valid2 if valid2 else 0.0,
    )


def reprojection_covisibility(
    depth1: np.ndarray,
    depth2: np.ndarray,
    K1: np.ndarray,
    K2: np.ndarray,
    cam2world1: np.ndarray,
    cam2world2: np.ndarray,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE_M,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
    check_inputs: bool = True,
) -> CovisScores:
    """Reprojection co-visibility with an occlusion test, in both directions (see module doc).

    ``check_inputs=False`` skips validation (NaN, shapes, rigid poses) for callers whose inputs
    come straight from a renderer that validated them; it saves ~1 ms per check.
    """
    depth1, depth2, K1, K2, pose1, pose2 = _check_inputs(
        depth1, depth2, K1, K2, cam2world1, cam2world2, check_inputs
    )
    if not (abs_tolerance >= 0 and rel_tolerance >= 0):
        raise ValueError(f"depth tolerances must be >= 0, got abs={abs_tolerance}, rel={rel_tolerance}")
    count12 = int(np.count_nonzero(covisible_pixels(depth1, K1, pose1, depth2, K2, pose2, abs_tolerance, rel_tolerance)[0]))
    count21 = int(np.count_nonzero(covisible_pixels(depth2, K2, pose2, depth1, K1, pose1, abs_tolerance, rel_tolerance)[0]))
    return _scores(count12, count21, depth1, depth2)


def reprojection_covisibility_masks(
    depth1: np.ndarray,
    depth2: np.ndarray,
    K1: np.ndarray,
    K2: np.ndarray,
    cam2world1: np.ndarray,
    cam2world2: np.ndarray,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE_M,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
    check_inputs: bool = True,
    pool: Executor | None = None,
) -> tuple[CovisScores, np.ndarray, np.ndarray]:
    """:func:`reprojection_covisibility` plus the two co-visible masks (view 1's pixels seen by
    view 2, and view 2's seen by view 1), for callers that crop to the shared region.

    With a thread ``pool`` the second direction runs on it while this thread does the first
    (numpy releases the GIL in the large array operations, so two cores share one check)."""
    depth1, depth2, K1, K2, pose1, pose2 = _check_inputs(
        depth1, depth2, K1, K2, cam2world1, cam2world2, check_inputs
    )
    if not (abs_tolerance >= 0 and rel_tolerance >= 0):
        raise ValueError(f"depth tolerances must be >= 0, got abs={abs_tolerance}, rel={rel_tolerance}")
    other = None if pool is None else pool.submit(
        covisible_pixels, depth2, K2, pose2, depth1, K1, pose1, abs_tolerance, rel_tolerance)
    mask12 = covisible_pixels(depth1, K1, pose1, depth2, K2, pose2, abs_tolerance, rel_tolerance)[0]
    if other is None:
        mask21 = covisible_pixels(depth2, K2, pose2, depth1, K1, pose1, abs_tolerance, rel_tolerance)[0]
    else:
        mask21 = other.result()[0]
    scores = _scores(int(np.count_nonzero(mask12)), int(np.count_nonzero(mask21)), depth1, depth2)
    return scores, mask12, mask21


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel bounds (end exclusive) of a mask's true pixels, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def decimate_depth(depth: np.ndarray, K: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``step``-th depth pixel in both axes and the intrinsics of that coarser grid.

    Sample ``(c, r)`` of the result is pixel ``(step*c + step//2, step*r + step//2)`` of the input,
    whose centre lies at ``step*c + step//2 + 0.5``; K is rewritten so that this centre is the
    coarse pixel's centre ``c + 0.5``. Scores on the coarse grid estimate the full ones ~step^2
    times faster (the miner's frustum pre-filter).
    """
    if step <= 1:
        return depth, np.asarray(K, dtype=np.float64)
    offset = step // 2
    small = depth[offset::step, offset::step]
    K = np.asarray(K, dtype=np.float64)
    K_small = np.array([
        [K[0, 0] / step, 0.0, (K[0, 2] - offset - 0.5) / step + 0.5],
        [0.0, K[1, 1] / step, (K[1, 2] - offset - 0.5) / step + 0.5],
        [0.0, 0.0, 1.0],
    ])
    return np.ascontiguousarray(small), K_small


def landing_fraction(
    src_depth: np.ndarray, src_K: np.ndarray, src_pose: np.ndarray, dst_K: np.ndarray, dst_pose: np.ndarray,
    dst_width: int, dst_height: int,
) -> float:
    """:func:`frustum_fraction` for trusted inputs (no checks): the share of source pixels whose
    surface point lands inside the destination image, in front of its camera."""
    hit = _landing_pixels(src_depth, src_K, src_pose, dst_K, dst_pose, (int(dst_height), int(dst_width)))[0]
    return int(np.count_nonzero(hit)) / src_depth.size


def reprojection_covisibility_at_least(
    depth1: np.ndarray,
    depth2: np.ndarray,
    K1: np.ndarray,
    K2: np.ndarray,
    cam2world1: np.ndarray,
    cam2world2: np.ndarray,
    least: float,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE_M,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> CovisScores | None:
    """:func:`reprojection_covisibility` of trusted inputs, or None as soon as one direction's H*W
    score is below ``least``: the pair score (the weaker direction) is then below it too, so a
    sampler rejecting the pair needs no second direction. 2->1 goes first, because the second view
    usually sees more than the reference covers, so that direction fails most often."""
    count21 = int(np.count_nonzero(covisible_pixels(depth2, K2, cam2world2, depth1, K1, cam2world1, abs_tolerance, rel_tolerance)[0]))
    if count21 / depth2.size < least:
        return None
    count12 = int(np.count_nonzero(covisible_pixels(depth1, K1, cam2world1, depth2, K2, cam2world2, abs_tolerance, rel_tolerance)[0]))
    if count12 / depth1.size < least:
        return None
    return _scores(count12, count21, depth1, depth2)


def croco_nn_covisibility(
    depth1: np.ndarray,
    depth2: np.ndarray,
    K1: np.ndarray,
    K2: np.ndarray,
    cam2world1: np.ndarray,
    cam2world2: np.ndarray,
    radius: float = DEFAULT_NN_RADIUS_M,
    check_inputs: bool = True,
) -> CovisScores:
    """CroCo's score: a point of one view counts if the other view has a world point within ``radius``."""
    depth1, depth2, K1, K2, pose1, pose2 = _check_inputs(
        depth1, depth2, K1, K2, cam2world1, cam2world2, check_inputs
    )
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    points1 = _valid_world_points(depth1, K1, pose1)
    points2 = _valid_world_points(depth2, K2, pose2)
    if points1.shape[0] == 0 or points2.shape[0] == 0:
        return _scores(0, 0, depth1, depth2)
    count12 = _count_with_neighbour(points1, cKDTree(points2), radius)
    count21 = _count_with_neighbour(points2, cKDTree(points1), radius)
    return _scores(count12, count21, depth1, depth2)


def _count_with_neighbour(queries: np.ndarray, tree: cKDTree, radius: float) -> int:
    distances, _ = tree.query(queries, k=1, distance_upper_bound=radius)
    return int(np.count_nonzero(np.isfinite(distances)))


def compute_covisibility(
    method: CovisMethod,
    depth1: np.ndarray,
    depth2: np.ndarray,
    K1: np.ndarray,
    K2: np.ndarray,
    cam2world1: np.ndarray,
    cam2world2: np.ndarray,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE_M,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
    radius: float = DEFAULT_NN_RADIUS_M,
    check_inputs: bool = True,
) -> CovisScores:
    """Dispatch to the named method; tolerances apply to ``reprojection``, ``radius`` to ``croco_nn``."""
    if method == "reprojection":
        return reprojection_covisibility(
            depth1, depth2, K1, K2, cam2world1, cam2world2, abs_tolerance, rel_tolerance, check_inputs
        )
    if method == "croco_nn":
        return croco_nn_covisibility(depth1, depth2, K1, K2, cam2world1, cam2world2, radius, check_inputs)
    raise ValueError(f"unknown co-visibility method {method!r}; expected 'reprojection' or 'croco_nn'")

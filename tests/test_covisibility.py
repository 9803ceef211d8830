"""Co-visibility on analytic depth maps: planar rectangles ray-cast from known poses."""

from __future__ import annotations

import numpy as np
import pytest

from rendering import camera
from rendering.covisibility import (
    compute_covisibility,
    croco_nn_covisibility,
    reprojection_covisibility,
)

W = H = 64
METHODS = ["reprojection", "croco_nn"]


def _plane(point, normal, lo=None, hi=None):
    """A plane through ``point`` with ``normal``, optionally bounded to the world box [lo, hi]."""
    return (np.asarray(point, float), np.asarray(normal, float), lo, hi)


def _raycast_depth(K, pose, planes, width=W, height=H):
    """Exact z-depth of the nearest plane hit per pixel centre (0 where nothing is hit)."""
    rays_cam = camera.pixel_rays(width, height, K)  # z == 1, so the ray parameter is z-depth
    rays = rays_cam @ pose[:3, :3].T
    eye = pose[:3, 3]
    depth = np.full((height, width), np.inf)
    for point, normal, lo, hi in planes:
        denom = rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((point - eye) @ normal) / denom
        hit = np.isfinite(t) & (t > 0)
        if lo is not None:
            xyz = eye + rays * t[..., None]
            hit &= np.all((xyz >= np.asarray(lo) - 1e-9) & (xyz <= np.asarray(hi) + 1e-9), axis=-1)
        depth = np.where(hit & (t < depth), t, depth)
    depth[~np.isfinite(depth)] = 0.0
    return depth.astype(np.float32)


WALL = _plane([0, 0, -3], [0, 0, 1])  # infinite wall 3 m in front of a camera at the origin
K = camera.intrinsics_from_fov(W, H, 60.0)


def _facing(eye, target):
    return camera.look_at(np.asarray(eye, float), np.asarray(target, float))


@pytest.mark.parametrize("method", METHODS)
def test_identical_views_score_one_and_hw_score_is_the_valid_fraction(method):
    pose = _facing([0, 0, 0], [0, 0, -1])
    depth = _raycast_depth(K, pose, [WALL])
    depth[:16, :8] = 0.0  # a block of invalid pixels
    valid_fraction = np.count_nonzero(depth > 0) / depth.size
    s = compute_covisibility(method, depth, depth, K, K, pose, pose)
    assert s.one_to_two_valid == pytest.approx(1.0)
    assert s.two_to_one_valid == pytest.approx(1.0)
    assert s.one_to_two_hw == pytest.approx(valid_fraction)
    assert s.two_to_one_hw == pytest.approx(valid_fraction)
    assert valid_fraction < 1.0


@pytest.mark.parametrize("method", METHODS)
def test_views_facing_away_score_zero(method):
    front = _facing([0, 0, 0], [0, 0, -1])
    back = _facing([0, 0, 0], [0, 0, 1])
    back_wall = _plane([0, 0, 3], [0, 0, -1])
    d1 = _raycast_depth(K, front, [WALL, back_wall])
    d2 = _raycast_depth(K, back, [WALL, back_wall])
    assert (d1 > 0).all() and (d2 > 0).all()
    s = compute_covisibility(method, d1, d2, K, K, front, back)
    assert (s.one_to_two_hw, s.two_to_one_hw, s.one_to_two_valid, s.two_to_one_valid) == (0, 0, 0, 0)


@pytest.mark.parametrize("method", METHODS)
def test_sideways_shift_overlaps_by_the_analytic_fraction(method):
    # Footprint on the wall is 2*3*tan(30deg) wide; a shift of a quarter of it leaves 3/4 overlap.
    shift = 0.25 * 2 * 3 * np.tan(np.radians(30))
    p1 = _facing([0, 0, 0], [0, 0, -1])
    p2 = _facing([shift, 0, 0], [shift, 0, -1])
    s = compute_covisibility(method, _raycast_depth(K, p1, [WALL]), _raycast_depth(K, p2, [WALL]), K, K, p1, p2)
    assert s.one_to_two_hw == pytest.approx(0.75, abs=1.0 / W)
    assert s.two_to_one_hw == pytest.approx(0.75, abs=1.0 / W)
    assert s.score == min(s.one_to_two_hw, s.two_to_one_hw)


@pytest.mark.parametrize("method", METHODS)
def test_swapping_views_swaps_directional_scores(method):
    K_wide = camera.intrinsics_from_fov(W, H, 90.0)
    p1 = _facing([0, 0, 0], [0, 0, -1])
    p2 = _facing([0.8, 0.2, 0.5], [0.3, 0, -3])
    d1 = _raycast_depth(K, p1, [WALL])
    d2 = _raycast_depth(K_wide, p2, [WALL])
    d2[40:, :] = 0.0
    a = compute_covisibility(method, d1, d2, K, K_wide, p1, p2)
    b = compute_covisibility(method, d2, d1, K_wide, K, p2, p1)
    assert a.one_to_two_hw == b.two_to_one_hw and a.two_to_one_hw == b.one_to_two_hw
    assert a.one_to_two_valid == b.two_to_one_valid and a.two_to_one_valid == b.one_to_two_valid
    assert abs(a.one_to_two_hw - a.two_to_one_hw) > 0.1  # the directions really differ here
    assert a.score == b.score


def test_occluder_in_front_of_view_two_reduces_reprojection_score():
    # View 2 stands 1 m behind view 1; a plate behind view 1 (so view 1 cannot see it) hides
    # the right half (x > 0) of view 1's part of the wall from view 2.
    p1 = _facing([0, 0, 0], [0, 0, -1])
    p2 = _facing([0, 0, 1], [0, 0, -1])
    plate = _plane([0, 0, 0.5], [0, 0, 1], lo=[0.0, -1.0, 0.5], hi=[1.0, 1.0, 0.5])
    d1 = _raycast_depth(K, p1, [WALL, plate])
    assert np.allclose(d1, _raycast_depth(K, p1, [WALL]))
    clear = reprojection_covisibility(d1, _raycast_depth(K, p2, [WALL]), K, K, p1, p2)
    blocked = reprojection_covisibility(d1, _raycast_depth(K, p2, [WALL, plate]), K, K, p1, p2)
    assert clear.one_to_two_hw == pytest.approx(1.0)
    assert blocked.one_to_two_hw == pytest.approx(0.5, abs=1.0 / W)


def test_depth_within_tolerance_still_counts_and_beyond_does_not():
    pose = _facing([0, 0, 0], [0, 0, -1])
    depth = _raycast_depth(K, pose, [WALL])
    near = depth * 1.04  # inside the 5% relative tolerance at 3 m
    far = depth * 1.10
    assert reprojection_covisibility(depth, near, K, K, pose, pose).one_to_two_hw == pytest.approx(1.0)
    assert reprojection_covisibility(depth, far, K, K, pose, pose).one_to_two_hw == 0.0
    loose = reprojection_covisibility(depth, far, K, K, pose, pose, rel_tolerance=0.2)
    assert loose.one_to_two_hw == pytest.approx(1.0)


def test_no_valid_pixels_gives_zero_not_a_division_error():
    pose = _facing([0, 0, 0], [0, 0, -1])
    empty = np.zeros((H, W), np.float32)
    depth = _raycast_depth(K, pose, [WALL])
    for fn in (reprojection_covisibility, croco_nn_covisibility):
        s = fn(empty, depth, K, K, pose, pose)
        assert (s.one_to_two_hw, s.one_to_two_valid, s.two_to_one_hw) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_bad_inputs_raise_value_errors_naming_the_input(method):
    pose = _facing([0, 0, 0], [0, 0, -1])
    depth = _raycast_depth(K, pose, [WALL])
    nan_depth = depth.copy()
    nan_depth[3, 3] = np.nan
    nan_pose = pose.copy()
    nan_pose[0, 3] = np.nan
    cases = [
        ((nan_depth, depth, K, K, pose, pose), "depth1"),
        ((depth, depth[None], K, K, pose, pose), "depth2"),
        ((depth, -depth, K, K, pose, pose), "depth2"),
        ((depth, depth, np.eye(4), K, pose, pose), "K1"),
        ((depth, depth, K, K * np.nan, pose, pose), "K2"),
        ((depth, depth, K + np.array([[0, 1.0, 0], [0, 0, 0], [0, 0, 0]]), K, pose, pose), "K1"),
        ((depth, depth, K, 2 * K, pose, pose), "K2"),
        ((depth, depth, K, K, nan_pose, pose), "cam2world1"),
        ((depth, depth, K, K, pose, pose[:3]), "cam2world2"),
    ]
    for args, name in cases:
        with pytest.raises(ValueError, match=name):
            compute_covisibility(method, *args)


def test_unknown_method_raises():
    pose = _facing([0, 0, 0], [0, 0, -1])
    depth = _raycast_depth(K, pose, [WALL])
    with pytest.raises(ValueError, match="unknown co-visibility method"):
        compute_covisibility("bogus", depth, depth, K, K, pose, pose)  # type: ignore[arg-type]


def test_reproject_depth_matches_camera_project_of_unprojected_points():
    from rendering.covisibility import reproject_depth

    rng = np.random.default_rng(3)
    K_dst = camera.intrinsics_from_fov(40, 30, 75.0)
    for _ in range(3):
        src = camera.look_at(rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3) + [0, 0, -4])
        dst = camera.apply_orientation_noise(src, *rng.uniform(-0.3, 0.3, 3))
        dst[:3, 3] += rng.uniform(-0.5, 0.5, 3)
        depth = rng.uniform(0.5, 6.0, (H, W)).astype(np.float32)
        u, v, z = reproject_depth(depth, K, src, K_dst, dst)
        uv_ref, z_ref = camera.project(camera.unproject_depth(depth, K, src).reshape(-1, 3), K_dst, dst)
        front = z_ref > 0.1
        np.testing.assert_allclose(z.ravel()[front], z_ref[front], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(u.ravel()[front], uv_ref[front, 0], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(v.ravel()[front], uv_ref[front, 1], rtol=1e-4, atol=1e-3)


def test_frustum_fraction_bounds_the_reprojection_score_from_above():
    from rendering.covisibility import frustum_fraction

    p1 = _facing([0, 0, 0], [0, 0, -1])
    p2 = _facing([0, 0, 1], [0, 0, -1])
    plate = _plane([0, 0, 0.5], [0, 0, 1], lo=[0.0, -1.0, 0.5], hi=[1.0, 1.0, 0.5])
    d1 = _raycast_depth(K, p1, [WALL])
    blocked = reprojection_covisibility(d1, _raycast_depth(K, p2, [WALL, plate]), K, K, p1, p2)
    bound = frustum_fraction(d1, K, p1, K, p2, W, H)
    assert bound == pytest.approx(1.0) and blocked.one_to_two_hw == pytest.approx(0.5, abs=1.0 / W)
    # Turned 90 degrees away, nothing of view 1 is in the frustum.
    assert frustum_fraction(d1, K, p1, K, _facing([0, 0, 0], [1, 0, 0]), W, H) == 0.0
    with pytest.raises(ValueError, match="src_depth"):
        frustum_fraction(d1[0], K, p1, K, p2, W, H)


@pytest.mark.parametrize("method", METHODS)
def test_unchecked_path_gives_the_same_scores(method):
    p1 = _facing([0, 0, 0], [0, 0, -1])
    p2 = _facing([0.5, 0.1, 0.3], [0.2, 0, -3])
    d1, d2 = _raycast_depth(K, p1, [WALL]), _raycast_depth(K, p2, [WALL])
    checked = compute_covisibility(method, d1, d2, K, K, p1, p2)
    assert compute_covisibility(method, d1, d2, K, K, p1, p2, check_inputs=False) == checked
    assert 0.2 < checked.score < 1.0

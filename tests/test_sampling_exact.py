"""The sampler's fast paths draw exactly the pairs of the plain CroCo loop.

The loop below is the sampler written out step by step with the library's checked, unhurried
building blocks (one rng call per walk step, the array path of snap_point, both co-visibility
directions with input checks). The shipped sampler takes shortcuts (one rng call per walk, a
one-point snap, co-visibility that stops after a failing direction); same seeds must still give
the same poses, scores, attempt counts, rejection counts and pixels.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from rendering.backend import SceneSpec
from rendering.backends import create_renderer
from rendering.camera import apply_orientation_noise, intrinsics_from_fov, look_at
from rendering.covisibility import compute_covisibility, frustum_fraction, reprojection_covisibility
from rendering.covisibility import reprojection_covisibility_at_least
from rendering.navigable import NavigableGrid
from rendering.sampling import (
    CANDIDATE_DEGENERATE_POSE,
    CANDIDATE_LOW_VALID,
    COVIS_ABOVE_MAX,
    COVIS_BELOW_MIN,
    FRUSTUM_BELOW_MIN,
    REFERENCE_LOW_VALID,
    SCREEN_PREFIX,
    UP,
    PairSamplingError,
    SamplerConfig,
    pair_rng,
    reference_pose,
    sample_pair,
    valid_depth_centroid,
)


def _plain_candidate_pose(rng, navigable, start_floor, target, config):
    point = np.asarray(start_floor, dtype=np.float64)
    for _ in range(config.walk_steps):
        dx, dz = rng.normal(0.0, config.walk_step_sigma, 2)
        point = navigable.snap_point((point + np.array([dx, 0.0, dz]))[None])[0]  # the (N, 3) path
    eye = point + float(rng.uniform(config.camera_height_min, config.camera_height_max)) * UP
    if np.linalg.norm(target - eye) < 1e-6:
        return None
    pan, tilt, roll = rng.uniform(-1.0, 1.0, 3) * np.radians([config.pan_deg, config.tilt_deg, config.roll_deg])
    return apply_orientation_noise(look_at(eye, target), pan, tilt, roll)


def _plain_verdict(config, view1, view2, K, pose1, pose2, margin):
    if not (np.any(view2.depth > 0) and view2.valid_fraction >= config.min_valid_fraction - margin):
        return CANDIDATE_LOW_VALID, None
    scores = compute_covisibility(
        config.covis_method, view1.depth, view2.depth, K, K, pose1, pose2,
        abs_tolerance=config.depth_tolerance_abs, rel_tolerance=config.depth_tolerance_rel, radius=config.nn_radius,
    )
    if scores.score < config.min_covis - margin:
        return COVIS_BELOW_MIN, scores
    if scores.score > config.max_covis + margin:
        return COVIS_ABOVE_MAX, scores
    return None, scores


def _plain_sample_pair(renderer, navigable, scene, pair_index, seed, config):
    """(view1, view2, pose1, pose2, scores, attempts, rejections); raises PairSamplingError."""
    rng = pair_rng(seed, scene.scene_id, pair_index)
    K = config.intrinsics()
    w, h = config.width, config.height
    screen = config.screen_shape()
    K_small = None if screen is None else intrinsics_from_fov(screen[0], screen[1], config.hfov_deg)
    precheck = screen is None and config.frustum_precheck and config.covis_method == "reprojection" and config.min_covis > 0
    rejections: Counter[str] = Counter()
    attempts = 0
    for _ in range(config.max_references):
        floor, pose1 = reference_pose(rng, navigable, config)
        view1 = renderer.render(K, pose1, w, h)
        attempts += 1
        if not (np.any(view1.depth > 0) and view1.valid_fraction >= config.min_valid_fraction):
            rejections[REFERENCE_LOW_VALID] += 1
            continue
        target = valid_depth_centroid(view1.depth, K, pose1)
        small1 = None if screen is None else renderer.render(K_small, pose1, *screen)
        for _ in range(config.max_candidates_per_reference):
            pose2 = _plain_candidate_pose(rng, navigable, floor, target, config)
            if pose2 is None:
                rejections[CANDIDATE_DEGENERATE_POSE] += 1
                continue
            if precheck and frustum_fraction(view1.depth, K, pose1, K, pose2, w, h) < config.min_covis:
                rejections[FRUSTUM_BELOW_MIN] += 1
                continue
            if small1 is not None:
                small2 = renderer.render(K_small, pose2, *screen)
                reason, _ = _plain_verdict(config, small1, small2, K_small, pose1, pose2, config.screen_margin)
                if reason is not None:
                    rejections[SCREEN_PREFIX + reason] += 1
                    continue
            view2 = renderer.render(K, pose2, w, h)
            attempts += 1
            reason, scores = _plain_verdict(config, view1, view2, K, pose1, pose2, 0.0)
            if reason is not None:
                rejections[reason] += 1
                continue
            return view1, view2, pose1, pose2, scores, attempts, dict(rejections)
    raise PairSamplingError(scene.scene_id, pair_index, attempts, dict(rejections))


@pytest.fixture(scope="module")
def procedural():
    scene = SceneSpec("proc-1", "procedural:1")
    renderer = create_renderer("embedded")
    navigable = renderer.load_scene(scene)
    yield renderer, navigable, scene
    renderer.close()


CONFIGS = {
    "croco defaults, screened": SamplerConfig(width=96, height=96, screen_size=32),
    "unscreened, frustum precheck": SamplerConfig(width=48, height=48, screen_size=0),
    "unscreened, no precheck, max_covis": SamplerConfig(
        width=48, height=48, screen_size=0, frustum_precheck=False, min_covis=0.2, max_covis=0.7
    ),
    "croco_nn": SamplerConfig(width=32, height=32, covis_method="croco_nn", min_covis=0.4),
    "few candidates, low min_covis": SamplerConfig(
        width=64, height=64, screen_size=16, max_candidates_per_reference=3, min_covis=0.3, walk_steps=2
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_sampler_draws_the_plain_loops_pairs(procedural, name):
    renderer, navigable, scene = procedural
    config = CONFIGS[name]
    for pair_index in range(4):
        view1, view2, pose1, pose2, scores, attempts, rejections = _plain_sample_pair(
            renderer, navigable, scene, pair_index, 3, config
        )
        fast = sample_pair(renderer, navigable, scene, pair_index, 3, config)
        assert np.array_equal(fast.cam2world1, pose1) and np.array_equal(fast.cam2world2, pose2)
        assert fast.covis == scores
        assert (fast.attempts, fast.rejections) == (attempts, rejections)
        assert fast.img1.tobytes() == view1.rgb.tobytes() and fast.depth2.tobytes() == view2.depth.tobytes()


def test_fast_sampler_fails_exactly_where_the_plain_loop_fails(procedural):
    renderer, navigable, scene = procedural
    config = SamplerConfig(width=48, height=48, screen_size=16, min_covis=0.95, max_references=3,
                           max_candidates_per_reference=5)
    with pytest.raises(PairSamplingError) as plain:
        _plain_sample_pair(renderer, navigable, scene, 0, 3, config)
    with pytest.raises(PairSamplingError) as fast:
        sample_pair(renderer, navigable, scene, 0, 3, config)
    assert (fast.value.attempts, fast.value.rejections) == (plain.value.attempts, plain.value.rejections)
    assert sum(fast.value.rejections.values()) >= 3 * 5 - 3  # every candidate was counted


def test_one_point_snap_equals_the_array_path_on_and_off_the_floor():
    heights = np.zeros((8, 10))
    heights[2:4, 3:7] = np.nan  # a hole in the middle
    heights[:, 0] = np.nan
    heights[6, 8] = 0.25  # a raised cell
    grid = NavigableGrid.from_heights(heights, (-1.3, 2.1), 0.3)
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-3, 4, 500), rng.normal(0, 1, 500), rng.uniform(0, 6, 500)])
    points[:5] = grid.cell_centres()[:5]  # exactly on cell centres
    many = grid.snap_point(points)
    assert 0 < np.mean(grid.is_navigable(points)) < 1  # both branches are exercised
    for point, expected in zip(points, many):
        one = grid.snap_point(point)
        assert one.shape == (3,) and np.array_equal(one, expected)
    with pytest.raises(ValueError, match="NaN or infinite"):
        grid.snap_point(np.array([0.0, math.nan, 3.0]))


def test_early_exit_covisibility_is_the_full_score_or_a_sure_rejection(procedural):
    renderer, navigable, scene = procedural
    config = SamplerConfig(width=48, height=48)
    K = config.intrinsics()
    rng = np.random.default_rng(5)
    views = []
    for _ in range(12):
        _, pose = reference_pose(rng, navigable, config)
        views.append((renderer.render(K, pose, 48, 48).depth, pose))
    outcomes = set()
    for (d1, p1), (d2, p2) in zip(views, views[1:] + views[:1]):
        full = reprojection_covisibility(d1, d2, K, K, p1, p2)
        for least in (0.0, full.score, full.score + 1e-9, 0.3, 0.5):
            fast = reprojection_covisibility_at_least(d1, d2, K, K, p1, p2, least)
            if full.score < least:
                assert fast is None
            else:
                assert fast == full
            outcomes.add(fast is None)
    assert outcomes == {True, False}

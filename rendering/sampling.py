"""CroCo's pair sampler (docs/sampling.md), seeded per (corpus seed, scene, pair index).

A pair is drawn with bounded loops only: up to ``max_references`` reference views in total, each
followed by up to ``max_candidates_per_reference`` second views. Every random draw comes from the
pair's own generator, in a fixed order, so pair ``k`` of a scene is the same whether it is drawn
alone, after pairs ``0..k-1`` or on another worker.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rendering.backend import NavigableSpace, RenderedView, Renderer, SceneSpec
from rendering.camera import (
    apply_orientation_noise,
    intrinsics_from_fov,
    look_at,
    pixel_rays,
    pose_from_rotation_translation,
    yaw_pitch_roll_rotation,
)
from rendering.covisibility import compute_covisibility, frustum_fraction, reprojection_covisibility_at_least
from rendering.pair import CovisScores, PairRecord, image_information

UP = np.array([0.0, 1.0, 0.0])

# Rejection reasons, the keys of PairRecord.rejections / PairSamplingError.rejections.
REFERENCE_LOW_VALID = "reference_low_valid"
CANDIDATE_LOW_VALID = "candidate_low_valid"
CANDIDATE_DEGENERATE_POSE = "candidate_degenerate_pose"  # eye on the look-at target
COVIS_BELOW_MIN = "covis_below_min"
FRUSTUM_BELOW_MIN = "frustum_below_min"  # rejected before rendering: too little of view 1 in view 2
COVIS_ABOVE_MAX = "covis_above_max"
REFERENCE_LOW_INFORMATION = "reference_low_information"  # a flat view: nothing to complete from
CANDIDATE_LOW_INFORMATION = "candidate_low_information"
SCREEN_PREFIX = "screen_"  # the same reasons, decided on the low-resolution screening render


class SamplerConfig(BaseModel):
    """Every parameter of the pair sampler, with CroCo's values as defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    width: int = Field(256, ge=8, le=8192, description="image width in pixels")
    height: int = Field(256, ge=8, le=8192, description="image height in pixels")
    hfov_deg: float = Field(60.0, gt=0.0, lt=180.0, description="horizontal field of view (degrees)")
    camera_height_min: float = Field(1.2, ge=0.0, le=10.0, description="metres above the floor")
    camera_height_max: float = Field(1.8, ge=0.0, le=10.0, description="metres above the floor")
    pan_deg: float = Field(3.0, ge=0.0, le=180.0, description="pan noise U(+-pan_deg)")
    tilt_deg: float = Field(10.0, ge=0.0, le=90.0, description="tilt noise U(+-tilt_deg)")
    roll_deg: float = Field(5.0, ge=0.0, le=180.0, description="roll noise U(+-roll_deg)")
    min_valid_fraction: float = Field(0.7, ge=0.0, le=1.0, description="least fraction of pixels with depth")
    walk_steps: int = Field(5, ge=0, le=1000, description="random-walk steps from reference to second view")
    walk_step_sigma: float = Field(2.0, ge=0.0, le=100.0, description="std of each step on X and Z (metres)")
    max_candidates_per_reference: int = Field(100, ge=1, le=100_000)
    max_references: int = Field(20, ge=1, le=100_000, description="reference views per pair in total")
    min_covis: float = Field(0.5, ge=0.0, le=1.0, description="least pair co-visibility kept")
    max_covis: float = Field(1.0, ge=0.0, le=1.0, description="largest pair co-visibility kept")
    covis_method: Literal["reprojection", "croco_nn"] = "reprojection"
    min_image_information: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="least image information of each view (rendering.pair.image_information: the fraction "
        "of 8x8 pixel blocks spanning at least 4 levels in some channel); 0 turns the check off. Every "
        "view the quickstart's sampler judges scores >= 0.16 (benchmarks/information_floor.py)",
    )
    depth_tolerance_abs: float = Field(0.05, ge=0.0, le=10.0, description="occlusion test: metres")
    depth_tolerance_rel: float = Field(0.05, ge=0.0, le=1.0, description="occlusion test: fraction of depth")
    nn_radius: float = Field(0.05, gt=0.0, le=10.0, description="croco_nn neighbour radius (metres)")
    frustum_precheck: bool = Field(
        True,
        description="reprojection only: skip rendering a candidate when too little of view 1 falls in its "
        "frustum (an upper bound of the score: accepted pairs are unchanged, only faster); "
        "used when screening is off",
    )
    screen_size: int = Field(
        64,
        ge=0,
        le=1024,
        description="width of a low-resolution render that screens candidates before the full-resolution "
        "one (0 or >= width: off; reprojection only). Full-resolution checks still decide; see screen_margin",
    )
    screen_margin: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="a screened candidate is dropped only when its low-resolution valid fraction or "
        "co-visibility misses the thresholds by more than this (64 px vs 256 px differ by <= 0.042 "
        "on measured candidates)",
    )

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> SamplerConfig:
        if self.camera_height_min > self.camera_height_max:
            raise ValueError(
                f"camera_height_min ({self.camera_height_min}) must be <= camera_height_max ({self.camera_height_max})"
            )
        if self.min_covis > self.max_covis:
            raise ValueError(f"min_covis ({self.min_covis}) must be <= max_covis ({self.max_covis})")
        return self

    def intrinsics(self) -> np.ndarray:
        return intrinsics_from_fov(self.width, self.height, self.hfov_deg)

    def screen_shape(self) -> tuple[int, int] | None:
        """(width, height) of the screening render, or None when screening is off.

        Only the reprojection score screens: croco_nn depends on resolution (its 5 cm radius spans
        fewer pixels in a small image), so its small-image score does not predict the full one.
        """
        if self.screen_size == 0 or self.screen_size >= self.width or self.covis_method != "reprojection":
            return None
        return self.screen_size, max(8, round(self.screen_size * self.height / self.width))

    def covisibility(self, view1: RenderedView, view2: RenderedView, K: np.ndarray, pose1, pose2) -> CovisScores:
        return compute_covisibility(
            self.covis_method,
            view1.depth,
            view2.depth,
            K,
            K,
            pose1,
            pose2,
            abs_tolerance=self.depth_tolerance_abs,
            rel_tolerance=self.depth_tolerance_rel,
            radius=self.nn_radius,
            check_inputs=False,  # renderer output and poses the sampler built and the renderer checked
        )


class PairSamplingError(RuntimeError):
    """No pair met the thresholds within the attempt budget; says which scene, pair and why."""

    def __init__(self, scene_id: str, pair_index: int, attempts: int, rejections: dict[str, int]):
        self.scene_id = scene_id
        self.pair_index = pair_index
        self.attempts = attempts
        self.rejections = dict(rejections)
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.rejections.items())) or "none"
        super().__init__(
            f"scene {scene_id!r}, pair {pair_index}: no pair accepted after {attempts} rendered views "
            f"(rejections: {reasons}); relax the thresholds (min/max co-visibility, min valid fraction) "
            "or raise the attempt bounds"
        )


def scene_hash(scene_id: str) -> int:
    """A stable 64-bit integer of a scene id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(scene_id.encode("utf-8"), digest_size=8).digest(), "little")


def pair_rng(corpus_seed: int, scene_id: str, pair_index: int) -> np.random.Generator:
    """The generator of one pair, independent of every other pair's."""
    if not isinstance(scene_id, str) or not scene_id:
        raise ValueError(f"scene_id must be a non-empty string, got {scene_id!r}")
    for what, value in (("corpus_seed", corpus_seed), ("pair_index", pair_index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return np.random.default_rng(np.random.SeedSequence([int(corpus_seed), scene_hash(scene_id), int(pair_index)]))


def _orientation_noise(pose: np.ndarray, rng: np.random.Generator, config: SamplerConfig) -> np.ndarray:
    limits = np.radians([config.pan_deg, config.tilt_deg, config.roll_deg])
    pan, tilt, roll = rng.uniform(-1.0, 1.0, 3) * limits
    return apply_orientation_noise(pose, pan, tilt, roll)


def _camera_height(rng: np.random.Generator, config: SamplerConfig) -> float:
    return float(rng.uniform(config.camera_height_min, config.camera_height_max))


def reference_pose(rng: np.random.Generator, navigable: NavigableSpace, config: SamplerConfig):
    """(floor point, cam2world) of a reference view: random floor point, height, yaw, noise."""
    floor = np.asarray(navigable.sample_point(rng), dtype=np.float64)
    eye = floor + _camera_height(rng, config) * UP
    yaw = float(rng.uniform(0.0, 2.0 * math.pi))
    level = pose_from_rotation_translation(yaw_pitch_roll_rotation(yaw, 0.0, 0.0), eye)
    return floor, _orientation_noise(level, rng, config)


def candidate_pose(
    rng: np.random.Generator,
    navigable: NavigableSpace,
    start_floor: np.ndarray,
    target: np.ndarray,
    config: SamplerConfig,
) -> np.ndarray | None:
    """cam2world of a second view: random walk on the floor, new height, look at ``target``, noise.

    None when the eye lands on the target (no direction to look in).
    """
    point = np.asarray(start_floor, dtype=np.float64)
    # One call for every step: the same numbers as one rng.normal(0, sigma, 2) per step, cheaper.
    steps = rng.normal(0.0, config.walk_step_sigma, (config.walk_steps, 2))
    for dx, dz in steps.tolist():
        point = np.asarray(navigable.snap_point(point + np.array([dx, 0.0, dz])), dtype=np.float64)
    eye = point + _camera_height(rng, config) * UP
    if np.linalg.norm(np.asarray(target) - eye) < 1e-6:
        return None
    return _orientation_noise(look_at(eye, target), rng, config)


def valid_depth_centroid(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """World centroid of a view's valid-depth point cloud (what the second view looks at).

    Equal to ``unproject_depth(depth, K, cam2world)[depth > 0].mean(0)`` (a test holds them equal).
    Unprojection is linear and a pixel ray's x depends on its column only, y on its row only, so
    the mean is formed from row/column sums in the camera frame and moved to the world once.
    """
    height, width = depth.shape
    d = np.where(depth > 0, depth, 0).astype(np.float64)
    count = np.count_nonzero(d)
    if count == 0:
        raise ValueError("valid_depth_centroid: the view has no valid depth")
    ray_x = pixel_rays(width, 1, K)[0, :, 0]
    ray_y = pixel_rays(1, height, K)[:, 0, 1]
    camera_mean = np.array([d.sum(axis=0) @ ray_x, d.sum(axis=1) @ ray_y, d.sum()]) / count
    return cam2world[:3, :3] @ camera_mean + cam2world[:3, 3]


def _valid_enough(view: RenderedView, least: float) -> bool:
    return bool(np.any(view.depth > 0)) and view.valid_fraction >= least


def _verdict(
    config: SamplerConfig, view1: RenderedView, view2: RenderedView, K: np.ndarray, pose1, pose2, margin: float
) -> tuple[str | None, CovisScores | None]:
    """(rejection reason or None, scores) of a candidate; ``margin`` loosens every threshold."""
    if not _valid_enough(view2, config.min_valid_fraction - margin):
        return CANDIDATE_LOW_VALID, None
    if config.covis_method == "reprojection":
        scores = reprojection_covisibility_at_least(
            view1.depth, view2.depth, K, K, pose1, pose2, config.min_covis - margin,
            config.depth_tolerance_abs, config.depth_tolerance_rel,
        )
        if scores is None:  # one direction is already below min_covis - margin
            return COVIS_BELOW_MIN, None
    else:
        scores = config.covisibility(view1, view2, K, pose1, pose2)
    if scores.score < config.min_covis - margin:
        return COVIS_BELOW_MIN, scores
    if scores.score > config.max_covis + margin:
        return COVIS_ABOVE_MAX, scores
    return None, scores


def sample_pair(
    renderer: Renderer,
    navigable: NavigableSpace,
    scene: SceneSpec,
    pair_index: int,
    corpus_seed: int,
    config: SamplerConfig,
) -> PairRecord:
    """Draw pair ``pair_index`` of ``scene`` (already loaded in ``renderer``; ``navigable`` is its floor).

    With screening on, each candidate is first rendered small (with a small reference view) and
    dropped there only if it misses a threshold by more than ``screen_margin``; survivors are
    rendered at full resolution, where the exact thresholds decide. ``attempts`` counts
    full-resolution views; screened-out candidates appear as ``screen_*`` rejections.

    Raises :class:`PairSamplingError` when ``max_references`` references (each with up to
    ``max_candidates_per_reference`` second views) produce no acceptable pair.
    """
    rng = pair_rng(corpus_seed, scene.scene_id, pair_index)
    K = config.intrinsics()
    width, height = config.width, config.height
    screen = config.screen_shape()
    K_small = None if screen is None else intrinsics_from_fov(screen[0], screen[1], config.hfov_deg)
    # The frustum bound holds for the reprojection score only (croco_nn matches points just outside).
    precheck = (
        screen is None and config.frustum_precheck and config.covis_method == "reprojection" and config.min_covis > 0
    )
    rejections: Counter[str] = Counter()
    attempts = 0
    for _ in range(config.max_references):
        floor, pose1 = reference_pose(rng, navigable, config)
        view1 = renderer.render(K, pose1, width, height)
        attempts += 1
        if not _valid_enough(view1, config.min_valid_fraction):
            rejections[REFERENCE_LOW_VALID] += 1
            continue
        information1 = image_information(view1.rgb) if config.min_image_information > 0 else None
        if information1 is not None and information1 < config.min_image_information:
            rejections[REFERENCE_LOW_INFORMATION] += 1
            continue
        target = valid_depth_centroid(view1.depth, K, pose1)
        small1 = None if screen is None else renderer.render(K_small, pose1, *screen)
        for _ in range(config.max_candidates_per_reference):
            pose2 = candidate_pose(rng, navigable, floor, target, config)
            if pose2 is None:
                rejections[CANDIDATE_DEGENERATE_POSE] += 1
                continue
            if precheck and frustum_fraction(view1.depth, K, pose1, K, pose2, width, height) < config.min_covis:
                rejections[FRUSTUM_BELOW_MIN] += 1
                continue
            if small1 is not None:
                small2 = renderer.render(K_small, pose2, *screen)
                reason, _ = _verdict(config, small1, small2, K_small, pose1, pose2, config.screen_margin)
                if reason is not None:
                    rejections[SCREEN_PREFIX + reason] += 1
                    continue
            view2 = renderer.render(K, pose2, width, height)
            attempts += 1
            reason, scores = _verdict(config, view1, view2, K, pose1, pose2, 0.0)
            information = None
            if reason is None and information1 is not None:
                information = (information1, image_information(view2.rgb))
                if information[1] < config.min_image_information:
                    reason = CANDIDATE_LOW_INFORMATION
            if reason is not None:
                rejections[reason] += 1
                continue
            return _record(renderer, scene, pair_index, corpus_seed, view1, view2, K, K, pose1, pose2, scores,
                           attempts, dict(rejections), information)
    raise PairSamplingError(scene.scene_id, pair_index, attempts, dict(rejections))


def _record(renderer, scene, pair_index, corpus_seed, view1, view2, K1, K2, pose1, pose2, scores, attempts,
            rejections, information=None) -> PairRecord:
    return PairRecord(
        scene_id=scene.scene_id,
        scene_uri=scene.uri,
        pair_index=int(pair_index),
        seed=int(corpus_seed),
        renderer=renderer.name,
        img1=view1.rgb,
        img2=view2.rgb,
        depth1=view1.depth,
        depth2=view2.depth,
        K1=np.asarray(K1, dtype=np.float64),
        K2=np.asarray(K2, dtype=np.float64),
        cam2world1=np.asarray(pose1, dtype=np.float64),
        cam2world2=np.asarray(pose2, dtype=np.float64),
        covis=scores,
        attempts=int(attempts),
        rejections=rejections,
        information=information,
    )


def _size_from_intrinsics(K: np.ndarray) -> tuple[int, int]:
    """(width, height) implied by the project's intrinsics (principal point at the image centre)."""
    width, height = 2.0 * float(K[0, 2]), 2.0 * float(K[1, 2])
    if not (width >= 1 and height >= 1 and width.is_integer() and height.is_integer()):
        raise ValueError(
            f"cannot infer the image size from K's principal point ({K[0, 2]}, {K[1, 2]}); pass width and height"
        )
    return int(width), int(height)


def render_pair_at_poses(
    renderer: Renderer,
    scene: SceneSpec,
    pair_index: int,
    corpus_seed: int,
    K1: np.ndarray,
    K2: np.ndarray,
    cam2world1: np.ndarray,
    cam2world2: np.ndarray,
    covis_method: Literal["reprojection", "croco_nn"] = "reprojection",
    *,
    width: int | None = None,
    height: int | None = None,
    attempts: int = 2,
    rejections: dict[str, int] | None = None,
    config: SamplerConfig | None = None,
) -> PairRecord:
    """Re-render a stored pair from its poses (``scene`` already loaded in ``renderer``).

    The image size defaults to the one K implies (principal point at the centre); pass ``width``
    and ``height`` with scaled K to re-render at another resolution. Tolerances come from
    ``config`` (defaults when None); ``attempts``/``rejections`` carry over the original record's.
    Thresholds are not applied: a stored pair is re-rendered as it is.
    """
    K1 = np.asarray(K1, dtype=np.float64)
    K2 = np.asarray(K2, dtype=np.float64)
    if width is None or height is None:
        width, height = _size_from_intrinsics(K1)
    config = config or SamplerConfig()
    view1 = renderer.render(K1, cam2world1, width, height)
    view2 = renderer.render(K2, cam2world2, width, height)
    scores = compute_covisibility(
        covis_method,
        view1.depth,
        view2.depth,
        K1,
        K2,
        cam2world1,
        cam2world2,
        abs_tolerance=config.depth_tolerance_abs,
        rel_tolerance=config.depth_tolerance_rel,
        radius=config.nn_radius,
    )
    return _record(renderer, scene, pair_index, corpus_seed, view1, view2, K1, K2, cam2world1, cam2world2, scores,
                   attempts, dict(rejections or {}))

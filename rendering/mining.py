"""Mine co-visible pairs from a posed RGB-D sequence with the exact reprojection score.

Stages, cheapest first, so the exact score (two full-resolution reprojections) runs only on
plausible candidates:

1. temporal: keyframes every ``frame_stride`` frames; candidates are keyframe pairs at most
   ``max_frame_gap`` frames apart;
2. pose pre-filters (vectorised): camera baseline in [min_baseline_m, max_baseline_m], optical
   axes at most ``max_angle_deg`` apart;
3. diversity, checked before any depth is touched (and again before each exact score, as pairs
   get accepted): at most ``max_pairs_per_frame`` pairs per frame, never a near-duplicate of an
   accepted pair (both ends within ``duplicate_translation_m`` and ``duplicate_rotation_deg`` of
   its ends);
4. frustum overlap estimate: the share of each view's (decimated) surface points landing inside
   the other view, both ways; a candidate whose smaller share is below ``min_covis -
   frustum_margin`` cannot reach the band (this share bounds the score from above, up to the
   decimation's sampling error); a keyframe's remaining candidates are taken from the
   least-filled of ``band_bins`` equal bins of the band (by their estimate) first, at most
   ``max_exact_per_frame`` of them;
5. exact co-visibility both ways with the occlusion test (rendering.covisibility, tolerance
   ``max(abs_tolerance, rel_tolerance * depth)`` for real sensor noise); accepted when in
   [min_covis, max_covis]. ``max_pairs`` then keeps that many, taken from the bins in turn.

No torch, no GL: this runs wherever numpy and OpenCV run.
"""

from __future__ import annotations

import hashlib
import math
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rendering.captures.record import CaptureFrame, CaptureSequence, load_depth
from rendering.covisibility import decimate_depth, landing_fraction, mask_box, reprojection_covisibility_masks
from rendering.pair import CovisScores


class MiningConfig(BaseModel):
    """Every setting of the pair miner (see the module doc for what each stage does)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    frame_stride: int = Field(5, ge=1, le=10_000, description="use every n-th frame as a keyframe")
    max_frame_gap: int = Field(150, ge=1, le=1_000_000, description="largest frame distance of a candidate pair")
    prefilters: bool = Field(True, description="pose and frustum pre-filters (off: score every temporal candidate)")
    min_baseline_m: float = Field(0.05, ge=0.0, le=100.0, description="least camera centre distance")
    max_baseline_m: float = Field(3.0, gt=0.0, le=1000.0, description="largest camera centre distance")
    max_angle_deg: float = Field(60.0, gt=0.0, le=180.0, description="largest angle between optical axes")
    frustum_step: int = Field(8, ge=1, le=64, description="depth decimation of the frustum estimate")
    frustum_margin: float = Field(0.1, ge=0.0, le=1.0, description="estimate may fall this far below min_covis")
    max_exact_per_frame: int = Field(6, ge=1, le=10_000, description="exact scores per keyframe (as reference)")
    min_covis: float = Field(0.5, ge=0.0, le=1.0)
    max_covis: float = Field(1.0, ge=0.0, le=1.0)
    abs_tolerance: float = Field(0.05, ge=0.0, le=10.0, description="occlusion test: metres")
    rel_tolerance: float = Field(0.05, ge=0.0, le=1.0, description="occlusion test: fraction of depth")
    max_pairs_per_frame: int = Field(4, ge=1, le=10_000)
    band_bins: int = Field(5, ge=1, le=1000, description="bins of [min_covis, max_covis] taken in turn")
    duplicate_translation_m: float = Field(0.05, ge=0.0, le=100.0)
    duplicate_rotation_deg: float = Field(5.0, ge=0.0, le=180.0)
    max_pairs: int | None = Field(None, ge=1, description="at most this many pairs per sequence, taken from the "
                                  "band's bins in turn among all accepted pairs")
    seed: int = Field(0, ge=0, description="order in which in-band pairs are taken within a bin")

    @model_validator(mode="after")
    def _ordered(self) -> MiningConfig:
        if self.min_covis > self.max_covis:
            raise ValueError(f"min_covis ({self.min_covis}) must be <= max_covis ({self.max_covis})")
        if self.min_baseline_m > self.max_baseline_m:
            raise ValueError(f"min_baseline_m ({self.min_baseline_m}) must be <= max_baseline_m ({self.max_baseline_m})")
        return self


@dataclass(frozen=True)
class MinedPair:
    """Two frames of a sequence (indices into ``sequence.frames``) and their exact scores."""

    first: int
    second: int
    covis: CovisScores
    box1: tuple[int, int, int, int] | None  # view 1's pixels seen by view 2 (x0, y0, x1, y1), depth grid
    box2: tuple[int, int, int, int] | None
    estimate: float  # the frustum overlap estimate (1.0 when pre-filters are off)


@dataclass
class MiningStats:
    keyframes: int = 0
    candidates: int = 0  # temporal candidates
    rejected: dict[str, int] = field(default_factory=dict)  # stage -> candidates dropped there
    scored: int = 0  # exact scores computed
    in_band: int = 0
    accepted: int = 0
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # process CPU time (all threads): the per-core cost on a shared machine
    seconds_exact: float = 0.0

    def reject(self, reason: str, n: int = 1) -> None:
        if n:
            self.rejected[reason] = self.rejected.get(reason, 0) + n

    def as_dict(self) -> dict:
        return {"keyframes": self.keyframes, "candidates": self.candidates,
                "rejected": dict(sorted(self.rejected.items())), "scored": self.scored, "in_band": self.in_band,
                "accepted": self.accepted, "seconds": round(self.seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3),
                "seconds_exact": round(self.seconds_exact, 3)}


DepthLoader = Callable[[CaptureFrame], np.ndarray]


class _DepthWindow:
    """Depth maps (and their decimated grids) of the keyframes in the current temporal window."""

    def __init__(self, frames: tuple[CaptureFrame, ...], load: DepthLoader, step: int):
        self.frames, self.load, self.step = frames, load, step
        self.cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index not in self.cache:
            depth = self.load(self.frames[index])
            small, K_small = decimate_depth(depth, self.frames[index].K_depth, self.step)
            self.cache[index] = (depth, small, K_small)
        return self.cache[index]

    def forget_before(self, index: int) -> None:
        for old in [k for k in self.cache if k < index]:
            del self.cache[old]


def _axes(frames: tuple[CaptureFrame, ...]) -> tuple[np.ndarray, np.ndarray]:
    poses = np.stack([f.cam2world for f in frames])
    return poses[:, :3, 3], poses[:, :3, 2]


def _angle_deg(axis: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(axes @ axis, -1.0, 1.0)))


def _spread(count: int, keep: int) -> np.ndarray:
    """``keep`` indices evenly spread over ``range(count)`` (all when count <= keep)."""
    if count <= keep:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(int))


def _keyframes(sequence: CaptureSequence, config: MiningConfig) -> list[int]:
    return list(range(0, len(sequence.frames), config.frame_stride))


def _pose_filter(i: int, partners: np.ndarray, positions, axes, config: MiningConfig,
                 stats: MiningStats) -> np.ndarray:
    """Stage 2 for reference keyframe ``i``: partners within the baseline and angle limits."""
    if not config.prefilters or partners.size == 0:
        return partners
    baseline = np.linalg.norm(positions[partners] - positions[i], axis=1)
    angle = _angle_deg(axes[i], axes[partners])
    near, far = baseline < config.min_baseline_m, baseline > config.max_baseline_m
    turned = ~near & ~far & (angle > config.max_angle_deg)
    stats.reject("baseline_below_min", int(near.sum()))
    stats.reject("baseline_above_max", int(far.sum()))
    stats.reject("viewing_angle", int(turned.sum()))
    return partners[~(near | far | turned)]


def _frustum_filter(i: int, partners: np.ndarray, window: _DepthWindow, frames, config: MiningConfig,
                    stats: MiningStats) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3: partners whose frustum estimate can reach the band, with the estimates (all of
    them, estimate 1.0, when pre-filters are off)."""
    if not config.prefilters or partners.size == 0:
        return partners, np.ones(partners.size)
    estimates = np.array([_frustum_estimate(window, frames, i, j) for j in partners])
    low = estimates < config.min_covis - config.frustum_margin
    stats.reject("frustum_overlap", int(low.sum()))
    return partners[~low], estimates[~low]


def _sweep(sequence: CaptureSequence, config: MiningConfig, load: DepthLoader,
           stats: MiningStats) -> Iterator[tuple[int, np.ndarray, _DepthWindow]]:
    """Stages 1-2, in temporal order: each reference keyframe with its partners that pass the pose
    filter, and the depth window (keyframes before the reference already forgotten)."""
    keys = _keyframes(sequence, config)
    stats.keyframes = len(keys)
    positions, axes = _axes(sequence.frames)
    window = _DepthWindow(sequence.frames, load, config.frustum_step)
    gap = max(1, config.max_frame_gap // config.frame_stride)
    for k, i in enumerate(keys):
        window.forget_before(i)
        partners = np.array(keys[k + 1 : k + 1 + gap], dtype=int)
        stats.candidates += partners.size
        yield i, _pose_filter(i, partners, positions, axes, config, stats), window


def score_candidates(sequence: CaptureSequence, config: MiningConfig, load: DepthLoader = load_depth,
                     stats: MiningStats | None = None) -> list[MinedPair]:
    """Stages 1-4 without the diversity stage: the exact scores of every plausible candidate (at
    most ``max_exact_per_frame`` per keyframe, spread over the estimates), in or out of band.
    For analysing a sequence and its thresholds; :func:`mine_sequence` scores lazily instead."""
    stats = stats if stats is not None else MiningStats()
    frames = sequence.frames
    scored: list[MinedPair] = []
    for i, partners, window in _sweep(sequence, config, load, stats):
        partners, estimates = _frustum_filter(i, partners, window, frames, config, stats)
        if config.prefilters:
            order = np.argsort(estimates, kind="stable")
            chosen = np.sort(order[_spread(order.size, config.max_exact_per_frame)])
            stats.reject("exact_per_frame_cap", int(partners.size - chosen.size))
            partners, estimates = partners[chosen], estimates[chosen]
        for j, estimate in zip(partners.tolist(), estimates.tolist()):
            scored.append(_exact(window, frames, i, j, estimate, config, stats))
    return scored


def _frustum_estimate(window: _DepthWindow, frames, i: int, j: int) -> float:
    _, small_i, K_i = window.get(i)
    _, small_j, K_j = window.get(j)
    fi, fj = frames[i], frames[j]
    one = landing_fraction(small_i, K_i, fi.cam2world, K_j, fj.cam2world, small_j.shape[1], small_j.shape[0])
    two = landing_fraction(small_j, K_j, fj.cam2world, K_i, fi.cam2world, small_i.shape[1], small_i.shape[0])
    return min(one, two)


def _exact(window: _DepthWindow, frames, i: int, j: int, estimate: float, config: MiningConfig,
           stats: MiningStats, pool: Executor | None = None) -> MinedPair:
    t0 = time.perf_counter()
    depth_i, depth_j = window.get(i)[0], window.get(j)[0]
    scores, mask_i, mask_j = reprojection_covisibility_masks(
        depth_i, depth_j, frames[i].K_depth, frames[j].K_depth, frames[i].cam2world, frames[j].cam2world,
        config.abs_tolerance, config.rel_tolerance, check_inputs=False, pool=pool,
    )
    stats.scored += 1
    stats.seconds_exact += time.perf_counter() - t0
    return MinedPair(i, j, scores, mask_box(mask_i), mask_box(mask_j), float(estimate))


class _Diversity:
    """Stage 5's bookkeeping: pairs per frame, accepted partners (near-duplicates), band bin fill."""

    def __init__(self, sequence: CaptureSequence, config: MiningConfig):
        self.config = config
        self.positions, self.axes = _axes(sequence.frames)
        self.per_frame: dict[int, int] = {}
        self.partners: dict[int, list[int]] = {}
        self.fill = [0] * config.band_bins
        salt = int.from_bytes(hashlib.blake2b(sequence.sequence_id.encode(), digest_size=4).digest(), "little")
        self.rng = np.random.default_rng([config.seed, salt])
        self.accepted: list[MinedPair] = []

    def bin(self, score: float) -> int:
        c = self.config
        width = c.max_covis - c.min_covis
        if width <= 0:
            return 0
        return int(min(c.band_bins - 1, max(0, (min(score, c.max_covis) - c.min_covis) / width * c.band_bins)))

    def full(self, frame: int) -> bool:
        return self.per_frame.get(frame, 0) >= self.config.max_pairs_per_frame

    def _near(self, a: int, frames: np.ndarray) -> np.ndarray:
        """Which of ``frames`` are within the duplicate distance and turn of frame ``a``."""
        cfg = self.config
        distance = np.linalg.norm(self.positions[frames] - self.positions[a], axis=1)
        return (distance <= cfg.duplicate_translation_m) & (_angle_deg(self.axes[a], self.axes[frames]) <= cfg.duplicate_rotation_deg)

    def duplicate(self, a: int, b: int) -> bool:
        """Both ends close to the two ends of an accepted pair (in either order)."""
        if not self.partners:
            return False
        ends = np.fromiter(self.partners, dtype=int, count=len(self.partners))
        for c in ends[self._near(a, ends)].tolist():
            if self._near(b, np.asarray(self.partners[c], dtype=int)).any():
                return True
        return False

    def blocked(self, a: int, b: int, stats: MiningStats) -> bool:
        """Whether diversity drops the pair now (counting why): a full frame or a near-duplicate."""
        if self.full(a) or self.full(b):
            stats.reject("frame_pair_cap")
            return True
        if self.duplicate(a, b):
            stats.reject("near_duplicate")
            return True
        return False

    def order(self, partners: np.ndarray, estimates: np.ndarray) -> Iterator[tuple[int, float]]:
        """Candidates of one reference, each time from the least-filled band bin (by estimate; fills
        change as pairs are accepted), in a seeded random order within a bin."""
        keys = self.rng.random(partners.size)
        left = list(range(partners.size))
        while left:
            k = min(left, key=lambda c: (self.fill[self.bin(estimates[c])], keys[c]))
            left.remove(k)
            yield int(partners[k]), float(estimates[k])

    def accept(self, pair: MinedPair) -> None:
        self.accepted.append(pair)
        self.fill[self.bin(pair.covis.score)] += 1
        for a, b in ((pair.first, pair.second), (pair.second, pair.first)):
            self.per_frame[a] = self.per_frame.get(a, 0) + 1
            self.partners.setdefault(a, []).append(b)


def mine_sequence(sequence: CaptureSequence, config: MiningConfig, load: DepthLoader = load_depth,
                  threads: int = 1) -> tuple[list[MinedPair], MiningStats]:
    """All five stages on one sequence; returns the accepted pairs (in frame order) and counts.

    The sweep is temporal (so only a window of depth maps is in memory) and the exact score is
    lazy: a plausible candidate is scored only when diversity would still accept it (neither end
    at ``max_pairs_per_frame``, not a near-duplicate), candidates of the least-filled band bin by
    their estimate first. Every candidate is counted once: accepted or under one rejection reason.
    ``threads`` = 2 runs the two directions of each exact score on two cores (same results).
    """
    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads - 1) as pool:
            return _mine(sequence, config, load, pool)
    return _mine(sequence, config, load, None)


def _mine(sequence: CaptureSequence, config: MiningConfig, load: DepthLoader,
          pool: Executor | None) -> tuple[list[MinedPair], MiningStats]:
    stats = MiningStats()
    t0, cpu0 = time.perf_counter(), time.process_time()
    frames = sequence.frames
    diversity = _Diversity(sequence, config)
    for i, partners, window in _sweep(sequence, config, load, stats):
        partners = np.array([j for j in partners.tolist() if not diversity.blocked(i, j, stats)], dtype=int)
        partners, estimates = _frustum_filter(i, partners, window, frames, config, stats)
        exact_left = config.max_exact_per_frame if config.prefilters else partners.size
        for j, estimate in diversity.order(partners, estimates):
            if diversity.blocked(i, j, stats):
                continue
            if exact_left == 0:
                stats.reject("exact_per_frame_cap")
            else:
                exact_left -= 1
                pair = _exact(window, frames, i, j, estimate, config, stats, pool)
                if config.min_covis <= pair.covis.score <= config.max_covis:
                    stats.in_band += 1
                    diversity.accept(pair)
                else:
                    stats.reject("outside_band")
    accepted = _thin(diversity, config.max_pairs, stats)
    stats.accepted = len(accepted)
    stats.seconds = time.perf_counter() - t0
    stats.cpu_seconds = time.process_time() - cpu0
    return sorted(accepted, key=lambda p: (p.first, p.second)), stats


def _thin(diversity: _Diversity, max_pairs: int | None, stats: MiningStats) -> list[MinedPair]:
    """At most ``max_pairs`` of the accepted pairs, taken from the band's bins in turn (seeded
    order within a bin), so a cap keeps the spread over the band and over the whole sequence."""
    accepted = diversity.accepted
    if max_pairs is None or len(accepted) <= max_pairs:
        return list(accepted)
    bins: list[list[MinedPair]] = [[] for _ in diversity.fill]
    for pair in accepted:
        bins[diversity.bin(pair.covis.score)].append(pair)
    queues = [[b[k] for k in diversity.rng.permutation(len(b))] for b in bins]
    kept: list[MinedPair] = []
    while len(kept) < max_pairs:
        for queue in queues:
            if queue and len(kept) < max_pairs:
                kept.append(queue.pop())
    stats.reject("max_pairs", len(accepted) - len(kept))
    return kept


# ---------------------------------------------------------------------------------------------
# Crops (CroCo v2 style): a rectangle of each view covering its co-visible region


def crop_window(box: tuple[int, int, int, int] | None, size: tuple[int, int],
                out_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The smallest rectangle of the output's aspect ratio that covers ``box`` (grown about its
    centre, moved inside the image, shrunk only where the image is too small), as (x0, y0, x1, y1).
    Without a box, the largest centred rectangle of that aspect ratio."""
    width, height = size
    aspect = out_size[0] / out_size[1]
    if box is None:
        box = (0, 0, width, height)
    x0, y0, x1, y1 = box
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    scale = min(1.0, width / w, height / h)
    w, h = max(1, int(math.floor(w * scale))), max(1, int(math.floor(h * scale)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - w / 2, 0), width - w)))
    top = int(round(min(max(cy - h / 2, 0), height - h)))
    return left, top, left + w, top + h


def crop_intrinsics(K: np.ndarray, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
    """K of the crop ``window`` resized to ``out_size`` (pixel centres at +0.5 both before and after)."""
    x0, y0, x1, y1 = window
    sx, sy = out_size[0] / (x1 - x0), out_size[1] / (y1 - y0)
    return np.array([[sx, 0.0, -sx * x0], [0.0, sy, -sy * y0], [0.0, 0.0, 1.0]]) @ np.asarray(K, dtype=np.float64)

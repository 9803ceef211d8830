"""Downstream datasets built from the corpus's val split (scenes never used for pretraining).

The val pairs are divided again *by scene* into a head-training part and a test part, so the
test scenes are unseen by both the backbone and the head (by pair only when the split holds a
single scene, which the result records). Each view is resized so that its short side equals the
model's input size (intrinsics scaled with it) and centre-cropped; the ground truth is computed
after that, on exactly the pixels the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from evaluation.ground_truth import PairSample, crop_pair, pair_flow, relative_pose
from rendering.layout import SHARD_GLOB, CorpusLayout
from rendering.shards import read_shard

MIN_BASELINE_M = 1e-3  # below this the translation direction of a pair is undefined


class MissingValSplitError(FileNotFoundError):
    """The corpus has no held-out (val) shards to evaluate on."""


def val_shards(corpus_dir: Path) -> list[Path]:
    layout = CorpusLayout(corpus_dir)
    folder = layout.shards_dir("val")
    shards = layout.split_shards("val")
    if not shards:
        raise MissingValSplitError(
            f"corpus {corpus_dir} has no val split ({folder}/{SHARD_GLOB} not found): downstream "
            "evaluation needs held-out scenes; generate the corpus with validation scenes"
        )
    return shards


def read_val_pairs(corpus_dir: Path, max_pairs: int | None = None) -> list[PairSample]:
    """Decoded val pairs in shard order (up to ``max_pairs``)."""
    pairs: list[PairSample] = []
    for shard in val_shards(corpus_dir):
        for s in read_shard(shard):
            m = s["meta"]
            pairs.append(
                PairSample(
                    key=s["__key__"], scene_id=str(m["scene_id"]), img1=s["img1"], img2=s["img2"],
                    depth1=s["depth1"], depth2=s["depth2"],
                    K1=np.asarray(m["K1"], np.float64), K2=np.asarray(m["K2"], np.float64),
                    cam2world1=np.asarray(m["cam2world1"], np.float64),
                    cam2world2=np.asarray(m["cam2world2"], np.float64),
                )
            )
            if max_pairs is not None and len(pairs) >= max_pairs:
                return pairs
    return pairs


def allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainder, ties to
    the earlier source): the counts sum to ``total`` and each is within 1 of its exact share."""
    shares = [total * w / sum(weights) for w in weights]
    counts = [int(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda k: (-(shares[k] - counts[k]), k))
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts


def val_pair_count(corpus_dir: Path) -> int:
    """Val pairs of a finished corpus, from its corpus.json counts."""
    import json

    info_path = CorpusLayout(corpus_dir).info
    try:
        return int(json.loads(info_path.read_text())["counts"]["pairs"]["val"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MissingValSplitError(f"{info_path}: cannot read the val pair count ({err})") from None


def read_val_mixture(sources: list[tuple[str, Path, float]], max_pairs: int | None = None
                     ) -> tuple[list[PairSample], dict[str, int]]:
    """Val pairs of several corpora, ``weight / sum`` of them from each (exact counts, returned).

    With ``max_pairs`` the total is that cap; without it, the largest total that every corpus can
    supply at its share. Each corpus contributes its first pairs in shard order.
    """
    weights = [w for _, _, w in sources]
    available = [val_pair_count(path) for _, path, _ in sources]
    share = [w / sum(weights) for w in weights]
    most = min(int(a / s + 1e-9) for a, s in zip(available, share))
    total = most if max_pairs is None else min(max_pairs, most)
    counts = allocate(total, weights)
    pairs: list[PairSample] = []
    for (label, path, _), n in zip(sources, counts):
        if n:
            pairs += read_val_pairs(path, n)
    return pairs, {label: n for (label, _, _), n in zip(sources, counts)}


def split_by_scene(pairs: list[PairSample], test_fraction: float) -> tuple[list[PairSample], list[PairSample], str]:
    """(head-train pairs, test pairs, 'scene' or 'pair'); deterministic (sorted scene ids)."""
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 val pairs to train and test a head, got {len(pairs)}")
    scenes = sorted({p.scene_id for p in pairs})
    if len(scenes) >= 2:
        n_test = min(len(scenes) - 1, max(1, round(test_fraction * len(scenes))))
        test_scenes = set(scenes[-n_test:])
        return [p for p in pairs if p.scene_id not in test_scenes], [p for p in pairs if p.scene_id in test_scenes], "scene"
    n_test = min(len(pairs) - 1, max(1, round(test_fraction * len(pairs))))
    return pairs[:-n_test], pairs[-n_test:], "pair"


def _resize(image: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interp)


def fit_pair(pair: PairSample, size: int) -> PairSample:
    """Resize (short side -> ``size``, depth by nearest neighbour) and centre-crop to size x size."""
    height, width = pair.depth1.shape
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        sx, sy = new_w / width, new_h / height
        S = np.diag([sx, sy, 1.0])  # exact for continuous pixel coordinates (centre at +0.5)
        pair = PairSample(
            key=pair.key, scene_id=pair.scene_id,
            img1=_resize(pair.img1, (new_w, new_h), False), img2=_resize(pair.img2, (new_w, new_h), False),
            depth1=_resize(pair.depth1, (new_w, new_h), True), depth2=_resize(pair.depth2, (new_w, new_h), True),
            K1=S @ pair.K1, K2=S @ pair.K2, cam2world1=pair.cam2world1, cam2world2=pair.cam2world2,
        )
    return crop_pair(pair, (new_h - size) // 2, (new_w - size) // 2, size)


def swapped(pair: PairSample) -> PairSample:
    return PairSample(
        key=pair.key + "-swap", scene_id=pair.scene_id, img1=pair.img2, img2=pair.img1,
        depth1=pair.depth2, depth2=pair.depth1, K1=pair.K2, K2=pair.K1,
        cam2world1=pair.cam2world2, cam2world2=pair.cam2world1,
    )


@dataclass
class TaskArrays:
    """Inputs and targets of one task as stacked numpy arrays (first axis = sample)."""

    task: str
    arrays: dict[str, np.ndarray]
    to_original_px: float | None = None  # flow only: pixels of the original images per model pixel

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])


def task_arrays(pairs: list[PairSample], task: str, size: int) -> TaskArrays:
    """Depth: both views of every pair. Flow and pose: both directions of every pair."""
    fitted = [fit_pair(p, size) for p in pairs]
    if task == "depth":
        imgs = [im for p in fitted for im in (p.img1, p.img2)]
        depths = [d for p in fitted for d in (p.depth1, p.depth2)]
        keep = [i for i, d in enumerate(depths) if np.any(d > 0)]
        out = {"img1": np.stack([imgs[i] for i in keep]), "depth": np.stack([depths[i] for i in keep])}
    elif task == "flow":
        rows = []
        for p in fitted:
            for q in (p, swapped(p)):
                flow, covis = pair_flow(q)
                if covis.any():
                    rows.append((q.img1, q.img2, np.nan_to_num(flow), covis))
        if not rows:
            raise ValueError("no val pair has a covisible pixel at this resolution")
        out = {k: np.stack([r[i] for r in rows]) for i, k in enumerate(("img1", "img2", "flow", "valid"))}
    elif task == "correspondence":
        out = _correspondence_arrays(fitted)
    elif task == "cross_view_gain":
        out = {"img1": np.stack([p.img1 for p in fitted]), "img2": np.stack([p.img2 for p in fitted])}
    elif task == "pose":
        rows = []
        for p in fitted:
            for q in (p, swapped(p)):
                T = relative_pose(q.cam2world1, q.cam2world2)
                if np.linalg.norm(T[:3, 3]) >= MIN_BASELINE_M:
                    rows.append((q.img1, q.img2, T[:3, :3], T[:3, 3] / np.linalg.norm(T[:3, 3])))
        if not rows:
            raise ValueError("every val pair has a zero baseline: relative translation direction undefined")
        out = {k: np.stack([r[i] for r in rows]) for i, k in enumerate(("img1", "img2", "rotation", "direction"))}
    else:
        raise ValueError(f"unknown task {task!r}; allowed: depth, flow, pose, correspondence, cross_view_gain")
    if len(next(iter(out.values()))) == 0:
        raise ValueError(f"task {task}: no usable sample among {len(pairs)} pairs")
    return TaskArrays(task, out)


def rotation_angle_deg(cam2world1: np.ndarray, cam2world2: np.ndarray) -> float:
    """Angle of the relative rotation between the two cameras, degrees."""
    R = relative_pose(cam2world1, cam2world2)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def _correspondence_arrays(fitted: list[PairSample]) -> dict[str, np.ndarray]:
    """Both directions of every pair with a covisible pixel: images, flow, covisible mask, the
    pair's co-visibility at this crop (min of the two directions, over H*W) and rotation angle."""
    rows = []
    for p in fitted:
        directions = [(q, *pair_flow(q)) for q in (p, swapped(p))]
        covis = min(float(mask.mean()) for _, _, mask in directions)
        angle = rotation_angle_deg(p.cam2world1, p.cam2world2)
        for q, flow, mask in directions:
            if mask.any():
                rows.append((q.img1, q.img2, np.nan_to_num(flow), mask, covis, angle))
    if not rows:
        raise ValueError("no val pair has a covisible pixel at this resolution")
    keys = ("img1", "img2", "flow", "valid", "covis", "rotation_deg")
    return {k: np.stack([r[i] for r in rows]) if i < 4 else np.asarray([r[i] for r in rows], np.float64)
            for i, k in enumerate(keys)}

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

from evaluation.ground_truth import MIN_BASELINE_M, PairSample, crop_pair, swapped  # noqa: F401  (re-exported)
from rendering.layout import CorpusError, CorpusLayout, MissingShardsError
from rendering.shards import read_shard


class MissingValSplitError(FileNotFoundError):
    """The corpus has no held-out (val) shards to evaluate on."""


def val_shards(corpus_dir: Path) -> list[Path]:
    """The val shards as the corpus manifest lists them (rendering.layout.CorpusLayout.split_shards)."""
    try:
        return CorpusLayout(corpus_dir).split_shards("val")
    except MissingShardsError as err:
        raise MissingValSplitError(f"corpus {corpus_dir} has no val split to read ({err}); `crocopipe verify "
                                   f"{corpus_dir}` says what to render again") from None
    except CorpusError as err:
        raise MissingValSplitError(
            f"corpus {corpus_dir} has no val split ({err}): downstream evaluation needs held-out scenes; "
            "generate the corpus with validation scenes"
        ) from None


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


@dataclass
class TaskArrays:
    """Inputs and targets of one task as stacked numpy arrays (first axis = sample)."""

    task: str
    arrays: dict[str, np.ndarray]
    to_original_px: float | None = None  # flow only: pixels of the original images per model pixel

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])


def task_arrays(pairs: list[PairSample], task: str, size: int) -> TaskArrays:
    """The arrays of a kind of task (evaluation.kinds) from val pairs fitted to ``size``: depth
    uses both views of every pair, flow and pose both directions of every pair."""
    from evaluation.kinds import get_kind

    kind = get_kind(task)
    fitted = [fit_pair(p, size) for p in pairs]
    out = kind.arrays(fitted)
    if len(next(iter(out.values()))) == 0:
        raise ValueError(f"task {task}: no usable sample among {len(pairs)} pairs")
    return TaskArrays(task, out)

"""Cross-view gain: the direct measure that a cross-view-completion model uses its second view.

    gain = pretext loss with a mismatched reference - pretext loss with the true reference

on the same views 1 with the same masks; the mismatched reference of pair ``i`` is view 2 of
pair ``(i + n // 2) % n`` (another pair of the set, usually of another scene since sets come in
shard order). ``gain > 0``: the model reads the reference view; ``~0``: it ignores it. A
single-view model (MAE) has no reference view, so its gain is undefined (never reported as 0).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from training.models.croco import IMAGENET_MEAN, IMAGENET_STD, MAENet, masked_count

log = logging.getLogger(__name__)


class CrossViewUndefined(ValueError):
    """The model has no reference view (single-view MAE): the gain is undefined."""


def uses_reference(model: nn.Module) -> bool:
    return not isinstance(model, MAENet)


def mismatched_order(n: int) -> torch.Tensor:
    """Index of each pair's mismatched reference: half the set away, never the pair itself."""
    if n < 2:
        raise ValueError(f"cross-view gain needs at least 2 pairs (a mismatched reference), got {n}")
    return (torch.arange(n) + n // 2) % n


def seeded_masks(n: int, num_patches: int, ratio: float, seed: int) -> torch.Tensor:
    """(n, num_patches) masks with exactly masked_count(N, ratio) True per row (as the model
    draws them), from ``seed`` alone."""
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(n, num_patches, generator=g).argsort(dim=1)
    mask = torch.zeros(n, num_patches, dtype=torch.bool)
    mask.scatter_(1, order[:, : masked_count(num_patches, ratio)], True)
    return mask


@torch.no_grad()
def cross_view_gain(
    model: nn.Module, img1: torch.Tensor, img2: torch.Tensor, mask: torch.Tensor, batch_size: int = 16
) -> dict[str, float]:
    """Mean pretext loss with the true and the mismatched reference over the set, and the gain.

    ``img1``/``img2`` are normalised (n, 3, H, W) views; ``mask`` (n, N) the masks of view 1.
    ``model(img1, img2, mask=mask)`` must return an object with a scalar ``loss`` (CroCoNet does).
    """
    if not uses_reference(model):
        raise CrossViewUndefined(f"{type(model).__name__} has no reference view: cross-view gain is undefined")
    n = img1.shape[0]
    other = mismatched_order(n)
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sums = {"loss_true": 0.0, "loss_mismatched": 0.0}
    try:
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            a, m = img1[sl].to(device), mask[sl].to(device)
            size = a.shape[0]
            sums["loss_true"] += float(model(a, img2[sl].to(device), mask=m).loss) * size
            sums["loss_mismatched"] += float(model(a, img2[other[sl]].to(device), mask=m).loss) * size
    finally:
        model.train(was_training)
    true, mismatched = sums["loss_true"] / n, sums["loss_mismatched"] / n
    gain = mismatched - true
    return {"loss_true": true, "loss_mismatched": mismatched, "gain": gain,
            "relative_gain": gain / mismatched if mismatched > 0 else float("nan"), "n_pairs": n}


def normalise_views(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> ImageNet-normalised float (n, 3, H, W), as the models take them."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Short side -> ``size`` (area interpolation), then the central size x size window."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    if abs(scale - 1.0) > 1e-9:
        image = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[top: top + size, left: left + size])


def held_out_views(corpus_dir: str | Path, crop: int, max_pairs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Up to ``max_pairs`` val pairs (uint8, centre-cropped), or None when the corpus has fewer than 2.

    Taken round-robin from the val shards (a shard holds one scene), so that a pair's mismatched
    reference, half the set away, comes from another scene whenever the split has several.
    """
    from rendering.layout import CorpusError, CorpusLayout
    from rendering.shards import read_shard

    try:
        shards = CorpusLayout(Path(corpus_dir)).split_shards("val")
    except CorpusError:
        return None
    per_shard = -(-max_pairs // len(shards))
    columns = []
    for shard in shards:
        taken = []
        for sample in read_shard(shard):
            taken.append((centre_crop(sample["img1"], crop), centre_crop(sample["img2"], crop)))
            if len(taken) >= per_shard:
                break
        columns.append(taken)
    picked = [col[i] for i in range(per_shard) for col in columns if i < len(col)][:max_pairs]
    if len(picked) < 2:
        return None
    return np.stack([a for a, _ in picked]), np.stack([b for _, b in picked])


class CrossViewMonitor:
    """Fixed held-out pairs and masks, scored at an interval during pretraining."""

    def __init__(self, corpus_dir: str | Path, model: nn.Module, crop: int, max_pairs: int, seed: int) -> None:
        self.active = uses_reference(model)
        self.views = held_out_views(corpus_dir, crop, max_pairs) if self.active else None
        if self.active and self.views is None:
            log.info("no val split with 2+ pairs in %s: cross-view gain is not logged", corpus_dir)
            self.active = False
        if self.active:
            self.img1, self.img2 = normalise_views(self.views[0]), normalise_views(self.views[1])
            n_patches = (crop // model.spec.patch_size) ** 2
            self.mask = seeded_masks(len(self.img1), n_patches, model.mask_ratio, seed)

    def measure(self, model: nn.Module) -> dict[str, float] | None:
        if not self.active:
            return None
        out = cross_view_gain(model, self.img1, self.img2, self.mask)
        return {f"cross_view_{k}": v for k, v in out.items() if k != "n_pairs"}

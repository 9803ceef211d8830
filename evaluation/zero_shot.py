"""Training-free evaluations of a pretrained backbone: dense correspondence from frozen features
and the cross-view gain of the pretext loss. No head, so no head-training seed noise; a seed
only changes the random-init baseline's weights and the cross-view gain's masks.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from evaluation.correspondence import correspondence_metrics, patch_queries
from evaluation.tasks import ZERO_SHOT_TASKS, get_task
from evaluation.val_split import TaskArrays
from training.cross_view import CrossViewUndefined, cross_view_gain, normalise_views, seeded_masks, uses_reference
from training.models import CroCoNet, MaskedViT

# Feature sets of the correspondence task: the encoder's output tokens of each view, and (CroCo
# only) the decoder's last-block tokens of each view conditioned on the other one.
FEATURE_SETS = ("enc", "dec")


@torch.no_grad()
def patch_features(backbone: MaskedViT, img1: torch.Tensor, img2: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'enc': (f1, f2), 'dec': (f1, f2)} per-patch features (B, N, C); 'dec' only for CroCo
    networks (MAE's decoder is single-view: no view-1 tokens conditioned on view 2)."""
    e1, p1, _ = backbone.encode(img1)
    e2, p2, _ = backbone.encode(img2)
    out = {"enc": (e1, e2)}
    if isinstance(backbone, CroCoNet):
        out["dec"] = (backbone.decode(e1, p1, e2, p2)[-1], backbone.decode(e2, p2, e1, p1)[-1])
    return out


def position_centred(f1: np.ndarray, f2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both views' (N, G*G, C) features minus the mean feature of each grid position over the set."""
    mean = np.concatenate([f1, f2]).mean(axis=0, keepdims=True)
    return f1 - mean, f2 - mean


def run_correspondence(backbone: MaskedViT, data: TaskArrays, matching: str, batch_size: int,
                       device: torch.device, centred: bool = False) -> dict:
    """Correspondence metrics per feature set, keys prefixed ``enc_`` / ``dec_`` (+ ``bins``)."""
    backbone = backbone.to(device).eval()
    a = data.arrays
    feats: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for start in range(0, len(data), batch_size):
        sl = slice(start, min(len(data), start + batch_size))
        x1, x2 = normalise_views(a["img1"][sl]).to(device), normalise_views(a["img2"][sl]).to(device)
        for name, (f1, f2) in patch_features(backbone, x1, x2).items():
            feats.setdefault(name, ([], []))
            feats[name][0].append(f1.float().cpu().numpy())
            feats[name][1].append(f2.float().cpu().numpy())
    patch = backbone.spec.patch_size
    queries = patch_queries(a["flow"], a["valid"], patch)
    metrics: dict[str, float] = {}
    bins: dict = {}
    thresholds: dict = {}
    for name, (f1, f2) in feats.items():
        x1, x2 = np.concatenate(f1), np.concatenate(f2)
        if centred:
            x1, x2 = position_centred(x1, x2)
        m = correspondence_metrics(x1, x2, queries, patch, a["covis"], a["rotation_deg"], matching)
        bins[name] = m.pop("bins")
        thresholds = m.pop("thresholds_px")
        metrics.update({f"{name}_{k}": v for k, v in m.items()})
    undefined = {} if "dec" in feats else {"dec": "single-view decoder: no view-1 tokens conditioned on view 2"}
    return {"metrics": metrics, "bins": bins, "thresholds_px": thresholds, "matching": matching,
            "position_centred": centred,
            "patch_size": patch, "undefined": undefined}


def run_cross_view_gain(backbone: MaskedViT, data: TaskArrays, seed: int, batch_size: int, device: torch.device) -> dict:
    """Pretext loss with the true vs a mismatched reference on the pairs of ``data``; masks from ``seed``."""
    if not uses_reference(backbone):
        return {"metrics": {}, "undefined": {"all": "single-view model: no reference view"}}
    backbone = backbone.to(device)
    img1, img2 = normalise_views(data.arrays["img1"]), normalise_views(data.arrays["img2"])
    mask = seeded_masks(len(img1), backbone.patch_embed.num_patches, backbone.mask_ratio, seed)
    try:
        return {"metrics": cross_view_gain(backbone, img1, img2, mask, batch_size)}
    except CrossViewUndefined as exc:  # pragma: no cover - uses_reference already checked
        return {"metrics": {}, "undefined": {"all": str(exc)}}


def measure_correspondence(backbone: MaskedViT, data: TaskArrays, cfg, seed: int, device: torch.device) -> dict:
    return run_correspondence(backbone, data, cfg.matching, cfg.batch_size, device, cfg.position_centred)


def measure_cross_view_gain(backbone: MaskedViT, data: TaskArrays, cfg, seed: int, device: torch.device) -> dict:
    return run_cross_view_gain(backbone, data, seed, cfg.batch_size, device)


# The measures the training-free tasks name (evaluation.tasks: Task.measure): (backbone, arrays,
# [evaluate] config, seed, device) -> the result's own fields.
MEASURES = {f.__name__: f for f in (measure_correspondence, measure_cross_view_gain)}


def run_zero_shot(task: str, method: str, backbone: MaskedViT, data: TaskArrays, cfg, seed: int,
                  device: torch.device) -> dict:
    """The result dict of a training-free task (same shape as a head task's, without training),
    scored by the measure its registry entry names."""
    name = get_task(task).measure
    if name is None:
        raise ValueError(f"{task!r} is not a training-free task; those are: {', '.join(ZERO_SHOT_TASKS)}")
    if name not in MEASURES:
        raise ValueError(f"task {task!r} names the measure {name!r}; known: {', '.join(MEASURES)}")
    t0 = time.perf_counter()
    out = MEASURES[name](backbone, data, cfg, seed, device)
    return {"task": task, "method": method, "seed": seed, "protocol": "zero-shot", "steps": 0,
            **out, "n_train": 0, "n_test": len(data), "device": str(device),
            "seconds": round(time.perf_counter() - t0, 3)}

"""Monocular depth: a DPT head on four encoder blocks of the image, SILog loss, metric-scale and
median-scaled AbsRel / RMSE / delta1."""

from __future__ import annotations

import numpy as np
import torch

from evaluation.ground_truth import PairSample
from evaluation.heads import DPTHead, hook_indices, silog_loss
from evaluation.metrics import depth_metrics

TWO_VIEW = False


def arrays(fitted: list[PairSample]) -> dict[str, np.ndarray]:
    """Both views of every pair that has any valid depth."""
    imgs = [im for p in fitted for im in (p.img1, p.img2)]
    depths = [d for p in fitted for d in (p.depth1, p.depth2)]
    keep = [i for i, d in enumerate(depths) if np.any(d > 0)]
    return {"img1": np.stack([imgs[i] for i in keep]), "depth": np.stack([depths[i] for i in keep])}


def build(model, spec, head_features: int) -> None:
    model.enc_hooks = hook_indices(spec.enc_depth)
    model.head = DPTHead([spec.enc_dim] * 4, 1, head_features)


def tokens(model, x1: torch.Tensor, x2: torch.Tensor | None) -> list[torch.Tensor]:
    _, _, blocks = model.backbone.encode(x1)
    return [blocks[i] for i in model.enc_hooks]


def head_output(model, tokens: list[torch.Tensor]) -> torch.Tensor:
    return model.head(tokens, model.grid, model.img_size)  # log-depth


def prepare(model, train) -> None:
    """Start the head at the training set's mean log-depth."""
    d = train.arrays["depth"]
    model.set_depth_prior(float(np.log(d[d > 0]).mean()))


def loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    log_pred = model.output(batch)[:, 0]
    depth = batch["depth"]
    return silog_loss(log_pred, depth, depth > 0)


def predict(model, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {"depth": torch.exp(model.output(batch)[:, 0].float().clamp(-10, 10)).cpu().numpy()}


def score(pred: dict[str, np.ndarray], data) -> dict:
    a = data.arrays
    metric = depth_metrics(pred["depth"], a["depth"])
    scaled = depth_metrics(pred["depth"], a["depth"], median_scaling=True)
    return {**metric, **{f"{k}_median_scaled": v for k, v in scaled.items() if k != "n_pixels"}}

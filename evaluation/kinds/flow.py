"""Optical flow, view 1 -> view 2: both views encoded, view 1 decoded attending to view 2, a DPT
head on the encoder's last block and three decoder blocks (CroCo-Flow's layout), Laplacian loss,
EPE and bad-pixel rates on covisible pixels.

The head works in units of ``flow_scale`` pixels (the training flow's RMS): pixel targets are
~100x the freshly initialised head's output, and in pixel units the Laplacian loss's scale
channel gets gradients ~|flow| times those of the flow channels, so the flow stalls at zero for
dozens of steps. The model still returns pixels (and log b in pixels).
"""

from __future__ import annotations

import numpy as np
import torch

from evaluation.ground_truth import PairSample, pair_flow, swapped
from evaluation.heads import DPTHead, hook_indices, laplacian_flow_loss
from evaluation.metrics import flow_metrics

TWO_VIEW = True
FLOW_SCALE_DIVISOR = 8.0  # default flow unit = image size / 8 pixels


def arrays(fitted: list[PairSample]) -> dict[str, np.ndarray]:
    """Both directions of every pair that has a covisible pixel."""
    rows = []
    for p in fitted:
        for q in (p, swapped(p)):
            flow, covis = pair_flow(q)
            if covis.any():
                rows.append((q.img1, q.img2, np.nan_to_num(flow), covis))
    if not rows:
        raise ValueError("no val pair has a covisible pixel at this resolution")
    return {k: np.stack([r[i] for r in rows]) for i, k in enumerate(("img1", "img2", "flow", "valid"))}


def build(model, spec, head_features: int) -> None:
    model.dec_hooks = hook_indices(spec.dec_depth, 3)
    model.head = DPTHead([spec.enc_dim] + [spec.dec_dim] * 3, 3, head_features)
    # Until set_flow_scale: a fixed fraction of the image size (flow grows with it).
    model.register_buffer("flow_scale", torch.tensor(model.img_size / FLOW_SCALE_DIVISOR))


def tokens(model, x1: torch.Tensor, x2: torch.Tensor) -> list[torch.Tensor]:
    blocks1, dec = model.two_view_features(x1, x2)
    return [blocks1[-1]] + [dec[i] for i in model.dec_hooks]


def head_output(model, tokens: list[torch.Tensor]) -> torch.Tensor:
    out = model.head(tokens, model.grid, model.img_size)
    # (flow, log b) in pixels from the head's flow_scale units
    return torch.cat([out[:, :2] * model.flow_scale, out[:, 2:] + torch.log(model.flow_scale)], dim=1)


def flow_scale(train) -> float:
    """RMS of the training flow's components on covisible pixels, at least 1 px."""
    flow = train.arrays["flow"][train.arrays["valid"]]
    if flow.size == 0:
        raise ValueError("flow training set has no covisible pixel")
    return max(1.0, float(np.sqrt(np.mean(np.square(flow, dtype=np.float64)))))


def prepare(model, train) -> None:
    model.set_flow_scale(flow_scale(train))


def loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    pred = model.output(batch)
    return laplacian_flow_loss(pred, batch["flow"].permute(0, 3, 1, 2).float(), batch["valid"])


def predict(model, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {"flow": model.output(batch)[:, :2].permute(0, 2, 3, 1).float().cpu().numpy()}


def score(pred: dict[str, np.ndarray], data) -> dict:
    a = data.arrays
    metrics = flow_metrics(pred["flow"], a["flow"], a["valid"])
    metrics["zero_flow_epe"] = flow_metrics(np.zeros_like(a["flow"]), a["flow"], a["valid"])["epe"]  # reference
    if data.to_original_px is not None:  # external-dataset flow: also in the dataset's own pixels
        metrics["epe_original_px"] = metrics["epe"] * data.to_original_px
    return metrics

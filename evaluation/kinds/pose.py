"""Relative camera pose: an attention-pooled head on the last decoder block's tokens predicting a
6-D rotation and a translation direction; geodesic + direction-angle loss; median errors and
accuracy at 5 / 10 degrees."""

from __future__ import annotations

import numpy as np
import torch

from evaluation.ground_truth import MIN_BASELINE_M, PairSample, relative_pose, swapped
from evaluation.heads import PoseHead, pose_loss
from evaluation.metrics import pose_metrics

TWO_VIEW = True


def arrays(fitted: list[PairSample]) -> dict[str, np.ndarray]:
    """Both directions of every pair with a baseline (the translation direction is defined)."""
    rows = []
    for p in fitted:
        for q in (p, swapped(p)):
            T = relative_pose(q.cam2world1, q.cam2world2)
            if np.linalg.norm(T[:3, 3]) >= MIN_BASELINE_M:
                rows.append((q.img1, q.img2, T[:3, :3], T[:3, 3] / np.linalg.norm(T[:3, 3])))
    if not rows:
        raise ValueError("every val pair has a zero baseline: relative translation direction undefined")
    return {k: np.stack([r[i] for r in rows]) for i, k in enumerate(("img1", "img2", "rotation", "direction"))}


def build(model, spec, head_features: int) -> None:
    model.head = PoseHead(spec.dec_dim)


def tokens(model, x1: torch.Tensor, x2: torch.Tensor) -> list[torch.Tensor]:
    _, dec = model.two_view_features(x1, x2)
    return [dec[-1]]


def head_output(model, tokens: list[torch.Tensor]):
    return model.head(tokens[0])


def prepare(model, train) -> None:
    """Nothing to set from the training data."""


def loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    r, t = model.output(batch)
    return pose_loss(r, t, batch["rotation"].float(), batch["direction"].float())


def predict(model, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    r, t = model.output(batch)
    return {"rotation": r.float().cpu().numpy(), "direction": t.float().cpu().numpy()}


def score(pred: dict[str, np.ndarray], data) -> dict:
    a = data.arrays
    return pose_metrics(pred["rotation"], pred["direction"], a["rotation"], a["direction"])

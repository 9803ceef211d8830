"""Reconstruction figure: masked input / reference view / prediction / target, one row per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rendering.atomic import atomic_path
from training.models.croco import IMAGENET_MEAN, IMAGENET_STD, PretrainOutput
from training.models.layers import patchify, unpatchify


def _to_rgb(img: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (img.detach().float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


@torch.no_grad()
def reconstruction_images(img1: torch.Tensor, img2: torch.Tensor, out: PretrainOutput, patch: int) -> dict[str, torch.Tensor]:
    """Denormalise the predicted patches with the true patches' statistics (the loss predicts
    per-patch normalised pixels) and paste them into the masked positions."""
    img1, img2 = img1.float().cpu(), img2.float().cpu()
    mask = out.mask.cpu()[..., None].float()
    patches = patchify(img1, patch)
    mean, std = patches.mean(-1, keepdim=True), (patches.var(-1, keepdim=True) + 1e-6) ** 0.5
    pred = out.pred.detach().float().cpu() * std + mean
    masked_in = unpatchify(patches * (1 - mask), patch)
    recon = unpatchify(patches * (1 - mask) + pred * mask, patch)
    return {"masked input": masked_in, "reference": img2, "prediction": recon, "target": img1}


def save_reconstruction(path: Path, img1: torch.Tensor, img2: torch.Tensor, out: PretrainOutput, patch: int,
                        rows: int = 4, title: str = "", uses_reference: bool = True) -> Path:
    """A grid of up to ``rows`` pairs: masked input, (reference view,) prediction, target, under a
    title that names the method, step and loss. Single-view methods (MAE) get no reference column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = reconstruction_images(img1, img2, out, patch)
    if not uses_reference:
        panels.pop("reference")
    n = min(rows, img1.shape[0])
    cols = len(panels)
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.3 * n + 0.5), squeeze=False)
    for r in range(n):
        for c, (label, imgs) in enumerate(panels.items()):
            axes[r, c].imshow(_to_rgb(imgs[r]))
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(label, fontsize=12)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path

"""Downstream heads and their losses.

* :class:`DPTHead`: a DPT-style dense head (Ranftl et al. 2021). Four token maps from chosen
  transformer blocks are reassembled into a 4-level pyramid (x4, x2, x1, x0.5 of the token grid),
  fused coarse-to-fine with residual conv units and upsampled to the input resolution. For depth
  it reads encoder blocks; for flow it reads the encoder's last block and decoder blocks (view 1
  attending to view 2), as CroCo-Flow does.
* :class:`PoseHead`: relative pose regression from the decoder tokens: attention pooling, an MLP,
  a 6-D rotation representation (Zhou et al. 2019, continuous, turned into a rotation by
  Gram-Schmidt) and a translation direction.
* Losses: scale-invariant log loss for depth (SILog, lambda 0.85: mostly scale-invariant, keeps
  some absolute-scale signal), Laplacian negative log-likelihood for flow (L1 with a learned
  per-pixel scale, as CroCo-Flow), geodesic rotation angle + direction angle for pose.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def hook_indices(depth: int, count: int = 4) -> list[int]:
    """``count`` block indices spread evenly over ``depth`` blocks, ending with the last one."""
    if depth < 1:
        raise ValueError(f"need at least one block, got depth {depth}")
    return [max(0, math.ceil((i + 1) * depth / count) - 1) for i in range(count)]


class ResidualConvUnit(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Add the (refined) skip feature, refine, upsample x2."""

    def __init__(self, dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.skip = ResidualConvUnit(dim)
        self.refine = ResidualConvUnit(dim)
        self.out = nn.Conv2d(dim, dim, 1)
        self.upsample = upsample

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.skip(skip)
        x = self.refine(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out(x)


class DPTHead(nn.Module):
    """Dense prediction from four token maps (B, N, C_i) on a ``grid`` x ``grid`` patch grid."""

    SCALES = (4.0, 2.0, 1.0, 0.5)

    def __init__(self, in_dims: list[int], out_channels: int, features: int = 64) -> None:
        super().__init__()
        if len(in_dims) != 4:
            raise ValueError(f"DPTHead takes four feature maps, got {len(in_dims)}")
        layer_dims = [features // 2, features, features * 2, features * 2]
        self.project = nn.ModuleList(nn.Conv2d(c, d, 1) for c, d in zip(in_dims, layer_dims))
        self.resample = nn.ModuleList(
            [
                nn.ConvTranspose2d(layer_dims[0], layer_dims[0], 4, stride=4),
                nn.ConvTranspose2d(layer_dims[1], layer_dims[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(layer_dims[3], layer_dims[3], 3, stride=2, padding=1),
            ]
        )
        self.to_features = nn.ModuleList(nn.Conv2d(d, features, 3, padding=1, bias=False) for d in layer_dims)
        # The finest fusion stays at 4x the token grid and the prediction is upsampled bilinearly
        # to the input size: full-resolution convolutions would dominate the cost on CPU.
        self.fusion = nn.ModuleList([FusionBlock(features, upsample=False)] + [FusionBlock(features) for _ in range(3)])
        self.output = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(features // 2, out_channels, 1),
        )

    def forward(self, tokens: list[torch.Tensor], grid: int, out_size: int) -> torch.Tensor:
        if len(tokens) != 4:
            raise ValueError(f"DPTHead takes four feature maps, got {len(tokens)}")
        levels = []
        for i, t in enumerate(tokens):
            b, n, c = t.shape
            if n != grid * grid:
                raise ValueError(f"feature {i}: {n} tokens do not form a {grid}x{grid} grid")
            x = t.transpose(1, 2).reshape(b, c, grid, grid)
            levels.append(self.to_features[i](self.resample[i](self.project[i](x))))
        x = self.fusion[3](levels[3])
        x = F.interpolate(x, size=levels[2].shape[-2:], mode="bilinear", align_corners=False)
        x = self.fusion[2](x, levels[2])
        x = self.fusion[1](x, levels[1])
        x = self.output(self.fusion[0](x, levels[0]))
        return F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)


def default_head_features(enc_dim: int) -> int:
    """Head width that grows with the backbone: 32 for test-size models, 64 tiny, 256 base+."""
    return int(min(256, max(32, 2 ** round(math.log2(max(enc_dim, 1) / 3)))))


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) proper rotations; the two 3-vectors are the first two columns."""
    a, b = x[..., :3], x[..., 3:]
    c1 = F.normalize(a, dim=-1)
    c2 = F.normalize(b - (c1 * b).sum(-1, keepdim=True) * c1, dim=-1)
    c3 = torch.cross(c1, c2, dim=-1)
    return torch.stack([c1, c2, c3], dim=-1)


class PoseHead(nn.Module):
    """Relative pose (R, t direction) of view 2 w.r.t. view 1 from decoder tokens (B, N, C)."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.rot = nn.Linear(hidden, 6)
        self.trans = nn.Linear(hidden, 3)
        # Start at the identity rotation so early gradients are well behaved.
        nn.init.zeros_(self.rot.weight)
        with torch.no_grad():
            self.rot.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(tokens)
        weights = self.score(x).softmax(dim=1)
        pooled = torch.cat([(weights * x).sum(1), x.mean(1)], dim=-1)
        h = self.mlp(pooled)
        return rotation_from_6d(self.rot(h)), F.normalize(self.trans(h), dim=-1)


# ------------------------------------------------------------------------------------------ losses


def silog_loss(log_pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014) on valid pixels; ``log_pred`` is log-depth."""
    if not valid.any():
        raise ValueError("silog_loss: batch has no valid depth pixel")
    d = (log_pred - torch.log(depth.clamp(min=1e-6)))[valid]
    return torch.sqrt((d**2).mean() - lam * d.mean() ** 2 + 1e-8)


def laplacian_flow_loss(pred: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Laplacian NLL: ``|f - f*|_1 / b + 2 log b`` with ``log b`` the prediction's third channel.

    ``pred`` (B, 3, H, W), ``flow`` (B, 2, H, W), ``valid`` (B, H, W).
    """
    if not valid.any():
        raise ValueError("laplacian_flow_loss: batch has no covisible pixel")
    log_b = pred[:, 2].clamp(-5.0, 5.0)
    l1 = (pred[:, :2] - flow).abs().sum(1)
    nll = l1 * torch.exp(-log_b) + 2.0 * log_b
    return nll[valid].mean()


def l1_flow_loss(pred: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    if not valid.any():
        raise ValueError("l1_flow_loss: batch has no covisible pixel")
    return (pred[:, :2] - flow).abs().sum(1)[valid].mean()


def geodesic_angle(r_pred: torch.Tensor, r_gt: torch.Tensor) -> torch.Tensor:
    """Per-sample rotation angle (radians) between (B, 3, 3) rotations."""
    rel = r_pred.transpose(-1, -2) @ r_gt
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.acos(cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6))


def pose_loss(
    r_pred: torch.Tensor, t_pred: torch.Tensor, r_gt: torch.Tensor, t_gt: torch.Tensor
) -> torch.Tensor:
    """Mean geodesic rotation angle + mean angle between translation directions (radians)."""
    t_gt = F.normalize(t_gt, dim=-1)
    cos_t = (F.normalize(t_pred, dim=-1) * t_gt).sum(-1).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    return geodesic_angle(r_pred, r_gt).mean() + torch.acos(cos_t).mean()

"""A pretrained backbone plus a task head, and which of its weights each protocol trains.

* ``depth`` (monocular): DPT head on four encoder blocks of the image.
* ``flow`` (binocular, view 1 -> view 2): both views encoded, view 1 decoded attending to view 2;
  DPT head on the encoder's last block and three decoder blocks (CroCo-Flow's layout). The head
  works in units of ``flow_scale`` pixels (the training flow's RMS): pixel targets are ~100x the
  freshly initialised head's output, and in pixel units the Laplacian loss's scale channel gets
  gradients ~|flow| times those of the flow channels, so the flow stalls at zero for dozens of
  steps. The model still returns pixels (and log b in pixels).
* ``pose`` (binocular): :class:`PoseHead` on the last decoder block's tokens.

Backbones per method: CroCo v1/v2 bring their own encoder and cross-view decoder. MAE has no
cross-view decoder, so for binocular tasks its pretrained encoder is put in a CroCo v1 network
whose decoder is freshly initialised (the paper's "MAE encoder" baseline). ``none`` is a CroCo
v1 network with random weights.

Protocols: ``finetune`` trains everything. ``probe`` freezes the backbone's weights and trains the
head, plus any component that had to be created fresh (MAE's cross-view decoder); for ``none``
the whole random backbone stays frozen (a random-features probe).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from evaluation.heads import DPTHead, PoseHead, hook_indices
from training.methods import get_method
from training.models import IMAGENET_MEAN, IMAGENET_STD, CroCoNet, MaskedViT
BINOCULAR = ("flow", "pose")
FLOW_SCALE_DIVISOR = 8.0  # default flow unit = image size / 8 pixels


def backbone_for_task(method: str, task: str, backbone: MaskedViT) -> tuple[MaskedViT, set[str]]:
    """The network the head sits on, and the names of its parameters that came pretrained.

    Two-view tasks on a method without a cross-view decoder go through its registered adapter
    (training.methods). For ``none`` every parameter counts as "backbone" (frozen under the probe
    protocol).
    """
    adapter = get_method(method).two_view
    if task in BINOCULAR and adapter is not None:
        return adapter(backbone)
    if task in BINOCULAR and not isinstance(backbone, CroCoNet):
        raise ValueError(f"task {task!r} needs a cross-view decoder; got {type(backbone).__name__}")
    return backbone, {n for n, _ in backbone.named_parameters()}


class DownstreamModel(nn.Module):
    def __init__(self, task: str, backbone: MaskedViT, head_features: int = 64) -> None:
        super().__init__()
        if task not in ("depth", "flow", "pose"):
            raise ValueError(f"unknown task {task!r}; allowed: depth, flow, pose")
        self.task = task
        self.backbone = backbone
        spec = backbone.spec
        self.grid = spec.img_size // spec.patch_size
        self.img_size = spec.img_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if task == "depth":
            self.enc_hooks = hook_indices(spec.enc_depth)
            self.head = DPTHead([spec.enc_dim] * 4, 1, head_features)
        elif task == "flow":
            self.dec_hooks = hook_indices(spec.dec_depth, 3)
            self.head = DPTHead([spec.enc_dim] + [spec.dec_dim] * 3, 3, head_features)
            # Until set_flow_scale: a fixed fraction of the image size (flow grows with it).
            self.register_buffer("flow_scale", torch.tensor(self.img_size / FLOW_SCALE_DIVISOR))
        else:
            self.head = PoseHead(spec.dec_dim)

    def set_depth_prior(self, mean_log_depth: float) -> None:
        """Start the depth head at the training set's mean log-depth (the head's last bias)."""
        if self.task != "depth":
            raise ValueError("set_depth_prior is for the depth task")
        last = self.head.output[-1]
        with torch.no_grad():
            last.bias.fill_(float(mean_log_depth))

    def set_flow_scale(self, scale_px: float) -> None:
        """Unit of the flow head's output in pixels (the runner uses the training flow's RMS)."""
        if self.task != "flow":
            raise ValueError("set_flow_scale is for the flow task")
        if not (math.isfinite(scale_px) and scale_px > 0):
            raise ValueError(f"flow scale must be a positive number of pixels, got {scale_px}")
        self.flow_scale.fill_(float(scale_px))

    def normalise(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W)."""
        x = img.permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def forward(self, img1: torch.Tensor, img2: torch.Tensor | None = None):
        x1 = self.normalise(img1)
        if self.task == "depth":
            _, _, blocks = self.backbone.encode(x1)
            return self.head([blocks[i] for i in self.enc_hooks], self.grid, self.img_size)  # log-depth
        if img2 is None:
            raise ValueError(f"task {self.task!r} needs both views")
        feat1, pos1, blocks1 = self.backbone.encode(x1)
        feat2, pos2, _ = self.backbone.encode(self.normalise(img2))
        dec = self.backbone.decode(feat1, pos1, feat2, pos2)
        if self.task == "flow":
            out = self.head([blocks1[-1]] + [dec[i] for i in self.dec_hooks], self.grid, self.img_size)
            # (flow, log b) in pixels from the head's flow_scale units
            return torch.cat([out[:, :2] * self.flow_scale, out[:, 2:] + torch.log(self.flow_scale)], dim=1)
        return self.head(dec[-1])


def configure_protocol(model: DownstreamModel, pretrained: set[str], protocol: str) -> dict[str, list[nn.Parameter]]:
    """Set requires_grad per protocol; returns {'head': [...], 'backbone': [...]} trainable groups."""
    if protocol not in ("probe", "finetune"):
        raise ValueError(f"unknown protocol {protocol!r}; allowed: probe, finetune")
    groups: dict[str, list[nn.Parameter]] = {"head": list(model.head.parameters()), "backbone": []}
    for name, p in model.backbone.named_parameters():
        trainable = protocol == "finetune" or name not in pretrained
        p.requires_grad_(trainable)
        if trainable:
            (groups["backbone"] if name in pretrained else groups["head"]).append(p)
    return groups


def count_parameters(params: list[nn.Parameter]) -> int:
    return int(sum(p.numel() for p in params))


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier: linear warmup, then half-cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

"""A pretrained backbone plus a task head, and which of its weights each protocol trains.

The heads and forward passes of the kinds of task (depth, flow, pose) are in evaluation.kinds.

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

from evaluation.kinds import KINDS, flow, head_kind
from training.methods import get_method
from training.models import IMAGENET_MEAN, IMAGENET_STD, CroCoNet, MaskedViT

BINOCULAR = tuple(name for name, kind in KINDS.items() if kind.TWO_VIEW)  # zero-shot kinds read two views too
FLOW_SCALE_DIVISOR = flow.FLOW_SCALE_DIVISOR


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
    """A backbone plus the head of a kind of task; the kind (evaluation.kinds) builds the head and
    runs the forward pass."""

    def __init__(self, task: str, backbone: MaskedViT, head_features: int = 64) -> None:
        super().__init__()
        self.kind = head_kind(task)
        self.task = task
        self.backbone = backbone
        spec = backbone.spec
        self.grid = spec.img_size // spec.patch_size
        self.img_size = spec.img_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.kind.build(self, spec, head_features)

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

    def two_view_features(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[list, list]:
        """(encoder blocks of view 1, decoder blocks of view 1 attending to view 2)."""
        feat1, pos1, blocks1 = self.backbone.encode(x1)
        feat2, pos2, _ = self.backbone.encode(x2)
        return blocks1, self.backbone.decode(feat1, pos1, feat2, pos2)

    def backbone_tokens(self, img1: torch.Tensor, img2: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The backbone's token maps (B, N, C) that the head reads, from uint8 images."""
        x1 = self.normalise(img1)
        if not self.kind.TWO_VIEW:
            return self.kind.tokens(self, x1, None)
        if img2 is None:
            raise ValueError(f"task {self.task!r} needs both views")
        return self.kind.tokens(self, x1, self.normalise(img2))

    def backbone_frozen(self) -> bool:
        """True when no backbone weight trains, so its tokens per image never change."""
        return not any(p.requires_grad for p in self.backbone.parameters())

    def forward(self, img1: torch.Tensor, img2: torch.Tensor | None = None):
        return self.kind.head_output(self, self.backbone_tokens(img1, img2))

    def output(self, batch: dict) -> torch.Tensor | tuple:
        """The head's output for a batch: from its precomputed ``tokens`` when it has them
        (a frozen backbone, see evaluation.runner), else from its images."""
        if "tokens" in batch:
            return self.kind.head_output(self, batch["tokens"])
        return self(batch["img1"], batch.get("img2"))


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

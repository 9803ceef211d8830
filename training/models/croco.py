"""CroCo v1/v2 (cross-view completion) and the single-view MAE baseline.

Both share one ViT encoder layout; they differ in the decoder. Positions: v1 and MAE add fixed
2-D sin-cos embeddings to the encoder and decoder inputs; v2 instead rotates q and k with 2-D
RoPE (base 100) in every self- and cross-attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from training.models.layers import (
    Attention,
    Block,
    CrossAttention,
    DecoderBlock,
    PatchEmbed,
    RoPE2D,
    RopeTable,
    Views,
    init_weights,
    layer_norm,
    patchify,
    sincos_pos_embed_2d,
    unpatchify,
)
from training.models.presets import ModelSpec

PosEmbed = Literal["cosine", "rope"]
# Images enter the model normalised with these (ImageNet) statistics, as in CroCo.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PretrainOutput:
    loss: torch.Tensor  # scalar
    pred: torch.Tensor  # (B, N, patch*patch*3), normalised-patch space
    target: torch.Tensor  # (B, N, patch*patch*3), per-patch normalised
    mask: torch.Tensor  # (B, N) bool, True = masked (to predict)


def masked_count(num_patches: int, ratio: float) -> int:
    """Masked tokens per sample: floor(ratio * N), computed as the reference code does
    (int() of the float product), e.g. 57 of 64 and 176 of 196 at ratio 0.9."""
    return int(ratio * num_patches)


def random_mask(batch: int, num_patches: int, ratio: float, device: torch.device) -> torch.Tensor:
    """Uniformly random masks with exactly masked_count(N, ratio) masked tokens per sample."""
    num_masked = masked_count(num_patches, ratio)
    order = torch.rand(batch, num_patches, device=device).argsort(dim=1)
    mask = torch.zeros(batch, num_patches, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :num_masked], True)
    return mask


def check_mask(mask: torch.Tensor, num_patches: int, num_masked: int, ratio: float) -> None:
    """Refuse a mask that is not (B, N) bool with exactly num_masked True entries per row.

    The model gathers a fixed number of visible tokens (a static shape), so a mask with another
    count would silently drop or duplicate tokens. Reads the mask back to the host: it runs where
    a caller hands a mask in, not on the masks the model draws itself.
    """
    if mask.dtype != torch.bool or mask.ndim != 2 or mask.shape[1] != num_patches:
        raise ValueError(f"mask must be a (batch, {num_patches}) bool tensor (True = masked), "
                         f"got {tuple(mask.shape)} {mask.dtype}")
    counts = mask.sum(dim=1)
    wrong = (counts != num_masked).nonzero()
    if len(wrong):
        row = int(wrong[0, 0])
        raise ValueError(f"mask row {row} has {int(counts[row])} masked tokens, expected {num_masked} "
                         f"(floor({ratio} x {num_patches})); {len(wrong)} of {mask.shape[0]} rows are wrong")


def visible_index(mask: torch.Tensor, num_visible: int) -> torch.Tensor:
    """(B, num_visible) positions of the unmasked tokens in ascending order.

    A gather index of static shape instead of boolean indexing, so torch.compile sees no
    data-dependent shapes.
    """
    return torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :num_visible]


def normalised_patch_mse(pred: torch.Tensor, img: torch.Tensor, mask: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE against per-patch mean/variance-normalised pixels, averaged over masked patches only."""
    target = patchify(img, patch)
    centred = target - target.mean(dim=-1, keepdim=True)
    # unbiased variance as torch.var computes it, in two passes (several times faster on CPU)
    var = centred.square().sum(dim=-1, keepdim=True) / (target.shape[-1] - 1)
    target = centred / (var + 1e-6) ** 0.5
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    m = mask.float()
    return (per_patch * m).sum() / m.sum().clamp(min=1.0), target


class MaskedViT(nn.Module):
    """Encoder, enc->dec projection, mask token and head shared by CroCo and MAE."""

    def __init__(self, spec: ModelSpec, pos_embed: PosEmbed, mask_ratio: float) -> None:
        super().__init__()
        if pos_embed not in ("cosine", "rope"):
            raise ValueError(f"unknown positional embedding {pos_embed!r}")
        self.spec = spec
        self.pos_embed = pos_embed
        self.mask_ratio = mask_ratio
        self.rope = RoPE2D(100.0) if pos_embed == "rope" else None
        self.patch_embed = PatchEmbed(spec.img_size, spec.patch_size, spec.enc_dim)
        grid = self.patch_embed.grid
        if pos_embed == "cosine":
            self.register_buffer("enc_pos_embed", sincos_pos_embed_2d(spec.enc_dim, grid, grid))
            self.register_buffer("dec_pos_embed", sincos_pos_embed_2d(spec.dec_dim, grid, grid))
        else:
            self.enc_pos_embed = None
            self.dec_pos_embed = None
        self.enc_blocks = nn.ModuleList(
            Block(spec.enc_dim, spec.enc_heads, spec.mlp_ratio) for _ in range(spec.enc_depth)
        )
        self.enc_norm = layer_norm(spec.enc_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.dec_dim))
        self.decoder_embed = nn.Linear(spec.enc_dim, spec.dec_dim)

    def _finish_init(self) -> None:
        self.dec_norm = layer_norm(self.spec.dec_dim)
        self.prediction_head = nn.Linear(self.spec.dec_dim, self.spec.patch_size**2 * 3)
        self.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def num_masked(self) -> int:
        """Masked tokens per sample during pretraining (masks have an exact count)."""
        return masked_count(self.patch_embed.num_patches, self.mask_ratio)

    @property
    def num_visible(self) -> int:
        return self.patch_embed.num_patches - self.num_masked

    def check_mask(self, mask: torch.Tensor) -> None:
        check_mask(mask, self.patch_embed.num_patches, self.num_masked, self.mask_ratio)

    @property
    def patch_size(self) -> int:
        return self.spec.patch_size

    def set_naive_attention(self, naive: bool) -> None:
        for m in self.modules():
            if isinstance(m, (Attention, CrossAttention)):
                m.naive = naive

    def encode(
        self, img: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Encode the visible tokens of `img` (all of them when mask is None; a mask must hold
        exactly num_masked = floor(mask_ratio * N) True entries per row, as random_mask draws
        them, else ValueError).

        Returns (tokens after enc_norm (B, Nvis, enc_dim), their (row, col) positions (B, Nvis, 2),
        the output of every encoder block, the last one after enc_norm).
        """
        if mask is not None:
            self.check_mask(mask)
        return self._encode(img, self._visible(mask))

    def _visible(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        return None if mask is None else visible_index(mask, self.num_visible)

    def rope_table(self, pos: torch.Tensor, dim: int, heads: int) -> RopeTable | None:
        return None if self.rope is None else self.rope.table(pos, dim // heads)

    def _encode(
        self, img: torch.Tensor, visible: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """encode() from the visible tokens' index, without the mask check: for masks drawn by
        random_mask (exact by construction), so the training step has no host sync and static
        shapes."""
        x, pos = self.patch_embed(img)
        if self.enc_pos_embed is not None:
            if x.shape[1] != self.enc_pos_embed.shape[0]:
                raise ValueError(f"sin-cos positions are fixed to {self.spec.img_size}x{self.spec.img_size} inputs, "
                                 f"got {img.shape[-2]}x{img.shape[-1]} (RoPE models accept other sizes)")
            x = x + self.enc_pos_embed
        if visible is not None:
            x = x.gather(1, visible[..., None].expand(-1, -1, x.shape[-1]))
            pos = pos.gather(1, visible[..., None].expand(-1, -1, 2))
        rope = self.rope_table(pos, self.spec.enc_dim, self.spec.enc_heads)
        outputs = []
        for blk in self.enc_blocks:
            x = blk(x, rope)
            outputs.append(x)
        x = self.enc_norm(x)
        outputs[-1] = x
        return x, pos, outputs

    def _encode_pair(
        self, img1: torch.Tensor, visible1: torch.Tensor, img2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """_encode(img1, visible1) and _encode(img2) of two equal-sized views in one pass: both
        views' tokens go through each block as one set of rows (one matmul per linear layer and
        one weight gradient instead of two summed), attention stays within each view.

        Returns (view 1's visible tokens (B, Nvis, enc_dim), view 2's tokens (B, N, enc_dim),
        view 2's positions (B, N, 2)), each after enc_norm.
        """
        x1, pos = self.patch_embed(img1)
        x2, pos2 = self.patch_embed(img2)
        if self.enc_pos_embed is not None:
            if x1.shape[1] != self.enc_pos_embed.shape[0]:
                raise ValueError(f"sin-cos positions are fixed to {self.spec.img_size}x{self.spec.img_size} inputs, "
                                 f"got {img1.shape[-2]}x{img1.shape[-1]} (RoPE models accept other sizes)")
            x1, x2 = x1 + self.enc_pos_embed, x2 + self.enc_pos_embed
        x1 = x1.gather(1, visible1[..., None].expand(-1, -1, x1.shape[-1]))
        pos1 = pos.gather(1, visible1[..., None].expand(-1, -1, 2))
        dim, heads = self.spec.enc_dim, self.spec.enc_heads
        ropes = [self.rope_table(pos1, dim, heads), self.rope_table(pos2, dim, heads)]
        views = Views(x1.shape[0], (x1.shape[1], x2.shape[1]))
        x = views.pack([x1, x2])
        for blk in self.enc_blocks:
            x = blk.forward_views(x, views, ropes)
        feat1, feat2 = views.split(self.enc_norm(x))
        return feat1, feat2, pos2

    def _decoder_input(self, feat: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
        """Project encoder tokens and put the mask token back at masked positions."""
        x = self.decoder_embed(feat)
        if visible is not None:
            idx = visible[..., None].expand(-1, -1, x.shape[-1])
            x = self.mask_token.to(x.dtype).expand(x.shape[0], self.patch_embed.num_patches, -1).scatter(1, idx, x)
        if self.dec_pos_embed is not None:
            x = x + self.dec_pos_embed
        return x

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(x, self.spec.patch_size)


class CroCoNet(MaskedViT):
    """Cross-view completion: reconstruct the masked view 1 from its visible 10% and view 2."""

    def __init__(self, spec: ModelSpec, pos_embed: PosEmbed = "cosine", mask_ratio: float = 0.9) -> None:
        super().__init__(spec, pos_embed, mask_ratio)
        self.dec_blocks = nn.ModuleList(
            DecoderBlock(spec.dec_dim, spec.dec_heads, spec.mlp_ratio) for _ in range(spec.dec_depth)
        )
        self._finish_init()

    def decode(
        self,
        feat1: torch.Tensor,
        pos1: torch.Tensor,
        feat2: torch.Tensor,
        pos2: torch.Tensor,
        mask1: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Decode view 1 attending to view 2; returns every decoder block's output (last one
        after dec_norm). With mask1, feat1 holds only the visible tokens and pos1 must be the
        full grid's positions; mask1 is checked as in encode()."""
        if mask1 is not None:
            self.check_mask(mask1)
        return self._decode(feat1, pos1, feat2, pos2, self._visible(mask1))

    def _decode(
        self,
        feat1: torch.Tensor,
        pos1: torch.Tensor,
        feat2: torch.Tensor,
        pos2: torch.Tensor,
        visible1: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        x = self._decoder_input(feat1, visible1)
        mem = self.decoder_embed(feat2)
        if self.dec_pos_embed is not None:
            mem = mem + self.dec_pos_embed
        rope1 = self.rope_table(pos1, self.spec.dec_dim, self.spec.dec_heads)
        rope2 = rope1 if pos2 is pos1 else self.rope_table(pos2, self.spec.dec_dim, self.spec.dec_heads)
        outputs = []
        for blk in self.dec_blocks:
            x = blk(x, mem, rope1, rope2)
            outputs.append(x)
        outputs[-1] = self.dec_norm(x)
        return outputs

    def forward(self, img1: torch.Tensor, img2: torch.Tensor, mask: torch.Tensor | None = None) -> PretrainOutput:
        """``mask`` (B, N) bool, True = masked; drawn at random when None (the cross-view-gain
        diagnostic passes the same mask with the true and with a mismatched view 2)."""
        b = img1.shape[0]
        if mask is None:
            mask = random_mask(b, self.patch_embed.num_patches, self.mask_ratio, img1.device)
        else:
            self.check_mask(mask)  # a mask handed in must hold exactly num_masked tokens per row
        visible = self._visible(mask)
        if img1.shape[-2:] == img2.shape[-2:]:
            feat1, feat2, pos2 = self._encode_pair(img1, visible, img2)
            pos1 = pos2  # the same grid: one RoPE table serves both views in the decoder
        else:
            feat1, _, _ = self._encode(img1, visible)
            feat2, pos2, _ = self._encode(img2)
            p = self.spec.patch_size
            pos1 = self.patch_embed.positions(b, img1.device, img1.shape[-2] // p, img1.shape[-1] // p)
        pred = self.prediction_head(self._decode(feat1, pos1, feat2, pos2, visible)[-1])
        loss, target = normalised_patch_mse(pred, img1, mask, self.spec.patch_size)
        return PretrainOutput(loss, pred, target, mask)


class MAENet(MaskedViT):
    """Single-view masked autoencoder baseline: same encoder, self-attention-only decoder."""

    def __init__(self, spec: ModelSpec, mask_ratio: float = 0.75) -> None:
        super().__init__(spec, "cosine", mask_ratio)
        self.dec_blocks = nn.ModuleList(Block(spec.dec_dim, spec.dec_heads, spec.mlp_ratio) for _ in range(spec.dec_depth))
        self._finish_init()

    def decode(self, feat: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Decode (the visible tokens of) one view; a mask is checked as in encode()."""
        if mask is not None:
            self.check_mask(mask)
        return self._decode(feat, self._visible(mask))

    def _decode(self, feat: torch.Tensor, visible: torch.Tensor | None = None) -> list[torch.Tensor]:
        x = self._decoder_input(feat, visible)
        outputs = []
        for blk in self.dec_blocks:
            x = blk(x)
            outputs.append(x)
        outputs[-1] = self.dec_norm(x)
        return outputs

    def forward(self, img1: torch.Tensor, img2: torch.Tensor | None = None) -> PretrainOutput:
        """img2 is accepted and ignored so that both methods train from the same pair batches."""
        b = img1.shape[0]
        mask = random_mask(b, self.patch_embed.num_patches, self.mask_ratio, img1.device)
        visible = self._visible(mask)
        feat, _, _ = self._encode(img1, visible)
        pred = self.prediction_head(self._decode(feat, visible)[-1])
        loss, target = normalised_patch_mse(pred, img1, mask, self.spec.patch_size)
        return PretrainOutput(loss, pred, target, mask)

"""Transformer building blocks shared by the CroCo and MAE models.

Attribute names (qkv, proj, projq/projk/projv, norm1/norm2/norm3/norm_y, mlp.fc1/fc2) are the ones
the public CroCo checkpoints use, so their state dicts load without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, naive: bool = False) -> torch.Tensor:
    """Softmax attention on (B, heads, N, head_dim) tensors.

    The fused kernel is the default; the naive path materialises the score matrix and exists to
    measure what the fused kernel buys.
    """
    if not naive:
        return F.scaled_dot_product_attention(q, k, v)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    return scores.softmax(dim=-1) @ v


@dataclass(frozen=True)
class RopeTable:
    """cos and signed sin of every rotation angle for one set of positions and one head size,
    (B or 1, 1, N, head_dim): built once per forward and shared by every block and by q and k."""

    cos: torch.Tensor
    sin: torch.Tensor  # -sin on the first quarter of each axis's channels, +sin on the second

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x (..., N, head_dim): x cos + swap(x) sin, where swap exchanges the two
        quarters of each axis's channels (the pair partner of each channel)."""
        return _Rotate.apply(x, self.cos.to(x.dtype), self.sin.to(x.dtype))


def _swap(x: torch.Tensor) -> torch.Tensor:
    """Exchange the two quarters of each axis's channels (its own inverse)."""
    d = x.shape[-1]
    return x.unflatten(-1, (2, 2, d // 4)).flip(-2).flatten(-3)


class _Rotate(torch.autograd.Function):
    """x cos + swap(x) sin with a hand-written backward: swap is an involution that maps sin to
    -sin (the sign differs between the quarters, the magnitudes agree) and cos to itself, so the
    gradient is g cos - swap(g) sin: three kernels each way instead of autograd's four."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(cos, sin)
        return torch.addcmul(x * cos, _swap(x), sin)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        cos, sin = ctx.saved_tensors
        return torch.addcmul(g * cos, _swap(g), sin, value=-1), None, None


class RoPE2D:
    """2-D rotary position embedding (CroCo v2): the first half of each head's channels rotates
    with the token's row, the second half with its column, frequencies base^(-2i/d) over each
    half's d channels.

    Parameter-free; applied to q and k so that q.k depends only on the positions' difference.
    """

    def __init__(self, base: float = 100.0) -> None:
        self.base = base

    def table(self, pos: torch.Tensor, head_dim: int) -> RopeTable:
        """Angles for pos (B, N, 2) integer (row, column); a batch-expanded grid (stride 0, as
        PatchEmbed.positions returns it) is computed once for the whole batch."""
        if head_dim % 4 != 0:
            raise ValueError(f"RoPE2D needs a head dimension divisible by 4, got {head_dim}")
        if pos.shape[0] > 1 and pos.stride(0) == 0:
            pos = pos[:1]
        d = head_dim // 2  # channels per axis
        inv_freq = 1.0 / (self.base ** (torch.arange(0, d, 2, device=pos.device, dtype=torch.float32) / d))
        angles = pos[..., None].float() * inv_freq  # (B, N, 2 axes, d/2)
        cos, sin = angles.cos(), angles.sin()
        cos = torch.cat([cos, cos], dim=-1).flatten(-2)[:, None]
        sin = torch.cat([-sin, sin], dim=-1).flatten(-2)[:, None]
        return RopeTable(cos, sin)

    def __call__(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: (B, heads, N, head_dim); pos: (B, N, 2) integer (row, column)."""
        return self.table(pos, x.shape[-1]).apply(x)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding (MAE / CroCo v1), (grid_h*grid_w, dim), row-major tokens.

    Half the channels encode the column, half the row; each half is [sin, cos] of
    position x 10000^(-i/(dim/4)).
    """
    if dim % 4 != 0:
        raise ValueError(f"sin-cos embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")

    def embed(p: np.ndarray) -> np.ndarray:
        out = p.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([embed(cols), embed(rows)], axis=1)).float()


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, plus each token's (row, column) grid position.

    Any input whose sides are multiples of the patch size is accepted (RoPE models can run at
    other resolutions than they were trained at); img_size is the training resolution.
    """

    def __init__(self, img_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"image size {img_size} is not a multiple of patch size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def positions(self, batch: int, device: torch.device, grid_h: int | None = None, grid_w: int | None = None) -> torch.Tensor:
        gh, gw = grid_h or self.grid, grid_w or self.grid
        rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1).expand(batch, -1, -1)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = img.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}")
        tokens = self.proj(img).flatten(2).transpose(1, 2)
        return tokens, self.positions(b, img.device, h // p, w // p)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and optional RoPE (one rotation
    call for q and k together)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by {heads} heads")
        self.heads = heads
        self.naive = False
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: RopeTable | None = None) -> torch.Tensor:
        return self.proj(self._attend(self.qkv(x), rope))

    def forward_views(self, x: torch.Tensor, views: "Views", ropes: list[RopeTable | None]) -> torch.Tensor:
        """Several views' tokens as rows (R, dim) (see Views): the projections run once over all
        rows, attention within each view."""
        parts = views.split(self.qkv(x))
        return self.proj(torch.cat([self._attend(p, r).flatten(0, 1) for p, r in zip(parts, ropes)]))

    def _attend(self, qkv: torch.Tensor, rope: RopeTable | None) -> torch.Tensor:
        """(B, N, 3 dim) projections -> (B, N, dim) attention output before `proj`."""
        b, n, c3 = qkv.shape
        c = c3 // 3
        qkv = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            (q, k), v = rope.apply(qkv[:2]), qkv[2]
        else:
            q, k, v = qkv
        return attention(q, k, v, self.naive).transpose(1, 2).reshape(b, n, c)


class CrossAttention(nn.Module):
    """Queries from the masked view, keys/values from the reference view (the memory).

    projk/projv stay separate parameters (the checkpoint layout) but run as one matmul.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by {heads} heads")
        self.heads = heads
        self.naive = False
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, mem: torch.Tensor, rope_x: RopeTable | None, rope_mem: RopeTable | None
    ) -> torch.Tensor:
        b, n, c = x.shape
        m, h = mem.shape[1], self.heads
        q = self.projq(x).reshape(b, n, h, c // h).transpose(1, 2)
        kv_weight = torch.cat([self.projk.weight, self.projv.weight])
        kv_bias = torch.cat([self.projk.bias, self.projv.bias])
        k, v = F.linear(mem, kv_weight, kv_bias).reshape(b, m, 2, h, c // h).permute(2, 0, 3, 1, 4)
        if rope_x is not None and rope_mem is not None:
            q, k = rope_x.apply(q), rope_mem.apply(k)
        out = attention(q, k, v, self.naive)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm(x)), x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rope: RopeTable | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))

    def forward_views(self, x: torch.Tensor, views: "Views", ropes: list[RopeTable | None]) -> torch.Tensor:
        """forward() on several views' tokens packed as rows (R, dim): every per-token layer
        runs once over all rows, attention within each view."""
        x = x + self.attn.forward_views(self.norm1(x), views, ropes)
        return x + self.mlp(self.norm2(x))


@dataclass(frozen=True)
class Views:
    """Token counts of several views of one batch packed as rows: view i's B x lengths[i]
    tokens are consecutive rows, sample-major, in view order."""

    batch: int
    lengths: tuple[int, ...]

    def pack(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([x.flatten(0, 1) for x in xs])

    def split(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """(R, C) rows -> one (B, lengths[i], C) tensor per view (views, no copies)."""
        parts = rows.split([self.batch * n for n in self.lengths])
        return [p.view(self.batch, n, -1) for p, n in zip(parts, self.lengths)]


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention -> cross-attention to the reference tokens -> MLP.

    The memory (reference view) passes through its own LayerNorm (norm_y) in each block and is
    never updated.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, heads)
        self.cross_attn = CrossAttention(dim, heads)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim)

    def forward(
        self, x: torch.Tensor, mem: torch.Tensor, rope_x: RopeTable | None = None, rope_mem: RopeTable | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope_x)
        x = x + self.cross_attn(self.norm2(x), self.norm_y(mem), rope_x, rope_mem)
        return x + self.mlp(self.norm3(x))


def init_weights(module: nn.Module) -> None:
    """MAE/CroCo initialisation: xavier-uniform linears (zero bias), unit LayerNorms, and the
    patch embedding's weight xavier-uniform as a flattened linear; its bias keeps PyTorch's
    default init, as in the reference."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        w = module.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))


def patchify(img: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, patch*patch*3), row-major patches, pixel order (py, px, channel)."""
    b, c, h, w = img.shape
    x = img.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(x: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    b, n, _ = x.shape
    g = int(math.isqrt(n))
    x = x.reshape(b, g, g, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, g * patch, g * patch)

"""Alternatives to three pieces of the training step, timed alone against today's code.

Each piece runs forward + backward on one thread (CPU time of the process, median of alternating
repeats), and each alternative is first checked to give today's outputs and gradients within fp32
tolerance. It records why these pieces stay as they are (see BENCHMARKS.md, training step):

- attention: fused SDPA vs the naive path vs an autograd.Function that scales q once and runs the
  softmax backward from the saved probabilities;
- patch embedding: the Conv2d vs patchify + linear on the reshaped conv weight;
- RoPE rotation: flip + addcmul vs quarter-wise products into one buffer (no flip copy).

    python benchmarks/train_pieces.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.models.layers import RoPE2D, _swap, attention, patchify  # noqa: E402


class SavedProbabilities(torch.autograd.Function):
    """softmax(q k^T / sqrt(d)) v keeping the probabilities for the backward."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        p = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        ctx.save_for_backward(q, k, v, p)
        return p @ v

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # noqa: ANN001
        q, k, v, p = ctx.saved_tensors
        scale = q.shape[-1] ** -0.5
        ds = torch._softmax_backward_data(g @ v.transpose(-2, -1), p, -1, p.dtype)
        return (ds @ k) * scale, (ds.transpose(-2, -1) @ q) * scale, p.transpose(-2, -1) @ g


def time_alternating(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median CPU ms of each function, run in alternating order."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def forward_backward(f: Callable[..., torch.Tensor], inputs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = f(*leaves)
    out.backward(g)
    return [out.detach()] + [t.grad for t in leaves]


def check_close(ref: list[torch.Tensor], other: list[torch.Tensor], what: str) -> None:
    for a, b in zip(ref, other):
        rel = float((a - b).norm() / a.norm())
        if rel > 1e-5:
            raise AssertionError(f"{what}: relative difference {rel:.1e}")


def bench_attention(repeats: int) -> None:
    for shape in [(8, 3, 196, 64), (8, 4, 196, 32), (8, 6, 196, 64), (8, 8, 196, 32)]:
        q, k, v = torch.randn(3, *shape)
        g = torch.randn(shape)
        fns = {"fused SDPA": lambda q, k, v: attention(q, k, v),
               "naive": lambda q, k, v: attention(q, k, v, naive=True),
               "saved probabilities": SavedProbabilities.apply}
        ref = forward_backward(fns["fused SDPA"], [q, k, v], g)
        for name, f in fns.items():
            check_close(ref, forward_backward(f, [q, k, v], g), f"attention {name}")
        ms = time_alternating({n: (lambda f=f: forward_backward(f, [q, k, v], g)) for n, f in fns.items()}, repeats)
        print(f"attention {shape}: " + ", ".join(f"{n} {t:.1f} ms" for n, t in ms.items()), flush=True)


def bench_patch_embed(repeats: int) -> None:
    for batch, size, patch, dim in [(8, 112, 8, 192), (8, 224, 16, 384)]:
        img = torch.randn(batch, 3, size, size)
        conv = torch.nn.Conv2d(3, dim, patch, patch)
        g = torch.randn(batch, (size // patch) ** 2, dim)

        def conv_embed(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.conv2d(img, w, b, stride=patch).flatten(2).transpose(1, 2)

        def linear_embed(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.linear(patchify(img, patch), w.permute(0, 2, 3, 1).reshape(dim, -1), b)

        params = [conv.weight, conv.bias]
        check_close(forward_backward(conv_embed, params, g), forward_backward(linear_embed, params, g), "patch embed")
        ms = time_alternating({"Conv2d": lambda: forward_backward(conv_embed, params, g),
                               "patchify + linear": lambda: forward_backward(linear_embed, params, g)}, repeats)
        print(f"patch embedding {size} px / {patch} -> {dim}, per view: "
              + ", ".join(f"{n} {t:.1f} ms" for n, t in ms.items()), flush=True)


def bench_rope(repeats: int) -> None:
    batch, tokens, heads, head_dim = 8, 196, 3, 64
    grid = torch.stack(torch.meshgrid(torch.arange(14), torch.arange(14), indexing="ij"), -1).reshape(-1, 2)
    table = RoPE2D(100.0).table(grid.expand(batch, -1, -1), head_dim)
    qk = torch.randn(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4)  # as Attention slices qkv
    quarters = (2, 2, head_dim // 4)

    def today() -> torch.Tensor:
        return torch.addcmul(qk * table.cos, _swap(qk), table.sin)

    def quarter_wise() -> torch.Tensor:
        x, s = qk.unflatten(-1, quarters), table.sin.unflatten(-1, quarters)
        out = torch.mul(x, table.cos.unflatten(-1, quarters))
        out[..., 0, :].addcmul_(x[..., 1, :], s[..., 0, :])
        out[..., 1, :].addcmul_(x[..., 0, :], s[..., 1, :])
        return out.flatten(-3)

    check_close([today()], [quarter_wise()], "RoPE")
    ms = time_alternating({"flip + addcmul": today, "quarter-wise": quarter_wise}, repeats)
    print("RoPE rotation of q and k (2, 8, 3, 196, 64), forward: "
          + ", ".join(f"{n} {t:.2f} ms" for n, t in ms.items()), flush=True)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    bench_attention(7)
    bench_patch_embed(9)
    bench_rope(30)


if __name__ == "__main__":
    main()

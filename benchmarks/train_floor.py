"""Where one training step's CPU time goes, and the fastest step its matrix products allow.

For one preset and positional embedding, at batch 8 and one thread (CPU time of the process):

1. profile: torch.profiler's self time of every aten op of a full optimiser step (forward,
   backward, AdamW) of today's code, grouped (matrix products, attention kernels, LayerNorm, GELU,
   copies, element-wise, gather/scatter, optimiser, ...);
2. floor: every matrix product the step runs (linear layers forward and backward, the patch
   convolution, the attention kernels), recorded with its shapes and strides, is re-run alone on
   fresh tensors; their summed CPU time is the step with everything else (norms, activations,
   residuals, copies, the loss, RoPE, the optimiser) costing nothing;
3. the same step of commit 82d4146's naive path, timed in alternating rounds with today's, so the
   floor is also stated as the largest today/82d4146 ratio those products permit.

    python benchmarks/train_floor.py --preset tiny --pos cosine
    python benchmarks/train_floor.py --preset small --pos rope --top 25
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from train_speedup import BASELINE_COMMIT, METHOD_OF_POS, Side, import_frozen_models  # noqa: E402
from training.models import build_model  # noqa: E402
from training.models.loading import load_state  # noqa: E402
from training.train import make_optimizer  # noqa: E402

MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward"}
ATTENTION_OPS = {"_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward"}
GROUPS = [  # (group, op names without the aten:: prefix); the first match wins
    ("matrix products", MATMUL_OPS | {"mkldnn_convolution", "_convolution", "matmul", "linear"}),
    ("attention kernel", ATTENTION_OPS | {"_softmax", "_softmax_backward_data"}),
    ("LayerNorm", {"native_layer_norm", "native_layer_norm_backward"}),
    ("GELU", {"gelu", "gelu_backward"}),
    ("copies", {"copy_", "clone", "contiguous", "cat", "stack", "_to_copy", "flip", "empty_like", "resize_",
                "as_strided_scatter", "index_put_", "_unsafe_view", "reshape"}),
    ("optimiser", {"_fused_adamw_", "_foreach_mul_", "_foreach_add_", "_foreach_lerp_", "_foreach_addcmul_"}),
    ("gather/scatter/mask", {"gather", "scatter", "scatter_", "scatter_add_", "argsort", "sort", "rand", "uniform_",
                             "index_select", "index_add_", "masked_fill_"}),
    ("reductions", {"sum", "mean", "var", "std", "amax", "norm"}),
    ("element-wise", {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "pow", "rsqrt", "neg", "fill_",
                      "zero_", "zeros_like", "zeros", "ones_like", "exp", "cos", "sin", "where", "clamp", "threshold_backward"}),
]


def group_of(op: str) -> str:
    name = op.removeprefix("aten::")
    for group, names in GROUPS:
        if name in names:
            return group
    return "other"


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    def make(self) -> torch.Tensor:
        extent = 1 + sum((s - 1) * st for s, st in zip(self.shape, self.stride) if s > 0)
        base = torch.randn(extent, dtype=self.dtype) if self.dtype.is_floating_point else torch.zeros(extent, dtype=self.dtype)
        return base.as_strided(self.shape, self.stride)


def _spec(x: object) -> object:
    if isinstance(x, torch.Tensor):
        return TensorSpec(tuple(x.shape), tuple(x.stride()), x.dtype)
    if isinstance(x, (list, tuple)):
        return type(x)(_spec(v) for v in x)
    return x


def _make(x: object) -> object:
    if isinstance(x, TensorSpec):
        return x.make()
    if isinstance(x, (list, tuple)):
        return type(x)(_make(v) for v in x)
    return x


class Recorder(TorchDispatchMode):
    """Records (op, argument specs) of the matrix products and attention kernels run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in MATMUL_OPS or name in ATTENTION_OPS:
            self.calls.append((func, _spec(args), _spec(kwargs)))
        return func(*args, **kwargs)


def matmul_gflop(name: str, args: tuple) -> float:
    """FLOPs (2 per multiply-add) of an mm / addmm / bmm / baddbmm call from its argument shapes."""
    if name == "mm":
        (m, k), (_, n) = args[0].shape, args[1].shape
        return 2e-9 * m * k * n
    if name == "addmm":
        (m, k), (_, n) = args[1].shape, args[2].shape
        return 2e-9 * m * k * n
    if name in ("bmm", "baddbmm"):
        a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
        return 2e-9 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return 0.0


def isolated_cpu_s(func, args: tuple, kwargs: dict, min_s: float = 0.02) -> float:  # noqa: ANN001
    """CPU seconds of one call on fresh tensors of the recorded shapes and strides (best of 3 batches)."""
    a, kw = _make(args), _make(kwargs)
    func(*a, **kw)
    best = float("inf")
    for _ in range(3):
        n, t0 = 0, time.process_time()
        while True:
            func(*a, **kw)
            n += 1
            dt = time.process_time() - t0
            if dt >= min_s:
                break
        best = min(best, dt / n)
    return best


def key_of(name: str, args: tuple) -> str:
    shapes = [tuple(a.shape) for a in args if isinstance(a, TensorSpec)]
    return f"{name} {' '.join('x'.join(map(str, s)) for s in shapes[:3])}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--pos", default="cosine", choices=["cosine", "rope"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the step timing")
    ap.add_argument("--top", type=int, default=20, help="ops listed in the profile")
    ap.add_argument("--commit", default=BASELINE_COMMIT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    method = METHOD_OF_POS[args.pos]
    with tempfile.TemporaryDirectory() as tmp:
        frozen = import_frozen_models(args.commit, Path(tmp))
        torch.manual_seed(0)
        old = frozen.build_model(method, args.preset)
        old.set_naive_attention(True)
        new = build_model(method, args.preset)
        load_state(new, old.state_dict())
        size = new.spec.img_size
        x1, x2 = torch.randn(args.batch, 3, size, size), torch.randn(args.batch, 3, size, size)
        sides = {"82d4146 naive": Side(old, torch.optim.AdamW(old.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                                             weight_decay=0.05), x1, x2, compiled=False),
                 "today": Side(new, make_optimizer(new, 1e-4, (0.9, 0.95), 0.05), x1, x2, compiled=False)}
        for side in sides.values():
            side.time(1)
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for name, side in sides.items():
                times[name] += side.time(1, time.process_time)
        step = {k: statistics.median(v) for k, v in times.items()}

        today = sides["today"]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            today.step()
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        total_self = sum(e.self_cpu_time_total for e in events)
        by_group: dict[str, float] = defaultdict(float)
        for e in events:
            by_group[group_of(e.key)] += e.self_cpu_time_total

        recorder = Recorder()
        with recorder:
            today.step()
        per_key: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # count, GFLOP, CPU s
        cache: dict[str, float] = {}
        for func, a, kw in recorder.calls:
            name = func.overloadpacket.__name__
            ck = f"{func} {a} {kw}"
            if ck not in cache:
                cache[ck] = isolated_cpu_s(func, a, kw)
            row = per_key[key_of(name, a)]
            row[0] += 1
            row[1] += matmul_gflop(name, a)
            row[2] += cache[ck]

    print(f"{args.preset} {args.pos}, batch {args.batch}, 1 thread, torch {torch.__version__}")
    print(f"step CPU time (median of {args.rounds} alternating rounds): 82d4146 naive {step['82d4146 naive'] * 1e3:.0f} ms, "
          f"today {step['today'] * 1e3:.0f} ms, ratio {step['82d4146 naive'] / step['today']:.3f}x")
    print(f"\nprofile of today's step (aten self time {total_self / 1e3:.0f} ms under the profiler):")
    print("| group | ms | share |\n|---|---|---|")
    for g, t in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"| {g} | {t / 1e3:.1f} | {t / total_self:.1%} |")
    print(f"\n| op | group | calls | self ms |\n|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"| {e.key} | {group_of(e.key)} | {e.count} | {e.self_cpu_time_total / 1e3:.2f} |")

    mat = {k: v for k, v in per_key.items() if not k.startswith("_scaled")}
    att = {k: v for k, v in per_key.items() if k.startswith("_scaled")}
    mat_s, att_s = sum(v[2] for v in mat.values()), sum(v[2] for v in att.values())
    mat_gf = sum(v[1] for v in mat.values())
    print(f"\nmatrix products of today's step, each re-run alone (CPU time):")
    print("| op and shapes | calls | GFLOP | ms | GFLOP/s |\n|---|---|---|---|---|")
    for k, (n, gf, s) in sorted(per_key.items(), key=lambda kv: -kv[1][2]):
        rate = f"{gf / s:.0f}" if gf else "-"
        print(f"| {k} | {n} | {gf:.2f} | {s * 1e3:.1f} | {rate} |")
    floor = mat_s + att_s
    base = step["82d4146 naive"]
    # the profiler's own overhead inflates its times; scale its shares to the step's CPU time
    scale = step["today"] / (total_self / 1e6)
    kept = sum(by_group[g] for g in ("LayerNorm", "GELU", "optimiser")) / 1e6 * scale
    print(f"\nlinear/convolution products: {mat_gf:.1f} GFLOP in {mat_s * 1e3:.0f} ms alone ({mat_gf / mat_s:.0f} GFLOP/s; "
          f"convolutions counted in time only); attention kernels {att_s * 1e3:.0f} ms alone")
    print(f"floor (those products alone, everything else free): {floor * 1e3:.0f} ms = {floor / step['today']:.0%} of "
          f"today's step; largest today/82d4146 ratio it permits: {base / floor:.2f}x (today {base / step['today']:.2f}x)")
    print(f"with LayerNorm, GELU and the optimiser at today's cost ({kept * 1e3:.0f} ms) as well: "
          f"{(floor + kept) * 1e3:.0f} ms, ratio at most {base / (floor + kept):.2f}x")


if __name__ == "__main__":
    main()

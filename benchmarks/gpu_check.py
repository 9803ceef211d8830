"""The GPU check: training, loader, rendering and a small study on one GPU, in one command.

    python benchmarks/gpu_check.py OUT_DIR                 # one GPU, <= 8 minutes (--budget-s)
    python benchmarks/gpu_check.py OUT_DIR --dry-run       # tiny sizes on CPU: every code path, minutes

Writes OUT_DIR/gpu_check.json (every figure, every error) and OUT_DIR/gpu_check.md, and prints
the Markdown summary. Sections (--sections): `training` (pairs/s, peak memory and MFU per
model x precision x compile x attention, the largest batch that fits, a profiler summary of the
top kernels), `loader` (pairs/s of the shard loader per worker count against the best training
rate: is the GPU starved?), `rendering` (benchmarks/render_fps.py and pairs_per_second.py on the
EGL device), `study` (`crocopipe run` on a small procedural config). Every section runs under a
share of the time budget; what did not fit is recorded as skipped, a failure as its error, and
the other sections still run.

MFU = pairs/s x training FLOPs per pair (training.flops) / the stated peak: by default the
H200's dense bf16 tensor-core figure, 989 TFLOP/s (--peak-tflops), for every precision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from training.pair_loader import AugmentConfig, make_loader  # noqa: E402
from training.flops import TRAIN_FACTOR, mfu, pretrain_forward_flops  # noqa: E402
from training.models import build_model  # noqa: E402
from training.synthetic import write_synthetic_corpus  # noqa: E402
from training.train import make_optimizer, precision_context, set_cuda_fast_math  # noqa: E402

H200_BF16_DENSE_TFLOPS = 989.0
SECTIONS = ("training", "loader", "rendering", "study")
# share of the budget each section may use (what one leaves unused carries over to the next)
SHARES = {"training": 0.45, "loader": 0.1, "rendering": 0.15, "study": 0.3}


@dataclass
class Plan:
    """Sizes of everything the check runs: the GPU plan, or a tiny one for CPU."""

    device: torch.device
    models: list[tuple[str, str]]  # (method, preset)
    batch: int
    batch_search: list[int]
    steps: int
    warmup: int
    modes: list[tuple[str, bool]]  # (precision, compiled)
    naive_mode: tuple[str, bool]  # the mode in which naive attention is measured too
    loader_workers: list[int]
    loader_batches: int
    loader_crop: int
    render_args: list[str]
    pairs_args: list[str]
    study_command: str  # "run" or "plan"
    peak_flops: float
    budget_s: float

    @staticmethod
    def gpu(budget_s: float, peak_tflops: float) -> "Plan":
        # CroCo v2 ViT-B first: its MFU is the figure the check is for
        return Plan(torch.device("cuda"), [("croco_v2", "base"), ("croco_v1", "base"), ("croco_v2", "large")], 64,
                    [128, 256], 10, 3, [("fp32", False), ("bf16", False), ("bf16", True)], ("bf16", False),
                    [4, 8, 16], 20, 224,
                    ["--sizes", "256", "512", "--frames", "100", "--repeats", "3", "--device-index", "0"],
                    ["--workers", "1", "8", "16", "--pairs", "40", "--size", "256"], "run",
                    peak_tflops * 1e12, budget_s)

    @staticmethod
    def dry(budget_s: float, peak_tflops: float, compile_: bool) -> "Plan":
        modes = [("fp32", False), ("bf16", False)] + ([("bf16", True)] if compile_ else [])
        return Plan(torch.device("cpu"), [("croco_v1", "test"), ("croco_v2", "test")], 2, [4], 2, 1, modes,
                    ("fp32", False), [0, 1], 3, 32,
                    ["--sizes", "64", "--frames", "2", "--repeats", "1", "--scenes", "procedural"],
                    ["--workers", "1", "--pairs", "2", "--size", "64"], "plan", peak_tflops * 1e12, budget_s)


@dataclass
class Clock:
    budget_s: float
    t0: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ training


def time_training(method: str, preset: str, batch: int, precision: str, compiled: bool, naive: bool,
                  plan: Plan) -> dict:
    """pairs/s, peak memory and MFU of full optimiser steps on a fixed random batch."""
    torch.manual_seed(0)
    model = build_model(method, preset).to(plan.device)
    model.set_naive_attention(naive)
    optimiser = make_optimizer(model, 1e-4, (0.9, 0.95), 0.05)
    if compiled:
        model.compile()
    size = model.spec.img_size
    x1 = torch.randn(batch, 3, size, size, device=plan.device)
    x2 = torch.randn(batch, 3, size, size, device=plan.device)
    context = precision_context(precision, plan.device)

    def step() -> torch.Tensor:
        with context:
            loss = model(x1, x2).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        return loss

    if plan.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(plan.device)
    t0 = time.perf_counter()
    for _ in range(plan.warmup):
        step()
    sync(plan.device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(plan.steps):
        loss = step()
    sync(plan.device)  # one wait for the whole timed run
    seconds = time.perf_counter() - t0
    pairs_per_s = plan.steps * batch / seconds
    flops = TRAIN_FACTOR * pretrain_forward_flops(method, model.spec, model.mask_ratio)
    peak_mem = torch.cuda.max_memory_allocated(plan.device) if plan.device.type == "cuda" else None
    return {"method": method, "preset": preset, "batch": batch, "precision": precision, "compiled": compiled,
            "attention": "naive" if naive else "fused", "pairs_per_s": pairs_per_s, "step_s": seconds / plan.steps,
            "warmup_s": warm_s, "gflop_per_pair": flops / 1e9, "mfu": mfu(pairs_per_s, flops, plan.peak_flops),
            "peak_memory_gib": None if peak_mem is None else peak_mem / 2**30, "loss": float(loss.detach())}


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def profile_top_kernels(method: str, preset: str, batch: int, precision: str, plan: Plan, rows: int = 15) -> str:
    """torch.profiler's table of the most expensive kernels over a few steps (eager mode)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_model(method, preset).to(plan.device)
    optimiser = make_optimizer(model, 1e-4, (0.9, 0.95), 0.05)
    size = model.spec.img_size
    x1 = torch.randn(batch, 3, size, size, device=plan.device)
    x2 = torch.randn(batch, 3, size, size, device=plan.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if plan.device.type == "cuda" else [])

    def steps(k: int) -> None:
        for _ in range(k):
            with precision_context(precision, plan.device):
                loss = model(x1, x2).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
        sync(plan.device)

    steps(1)  # warm-up outside the profile
    with profile(activities=activities) as prof:
        steps(2)
    key = "self_cuda_time_total" if plan.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def training_section(plan: Plan, clock: Clock) -> dict:
    results, errors, skipped = [], [], []
    for method, preset in plan.models:
        runs = [(p, c, False) for p, c in plan.modes] + [(*plan.naive_mode, True)]
        for precision, compiled, naive in runs:
            name = f"{method}/{preset} {precision}{' compiled' if compiled else ''} {'naive' if naive else 'fused'}"
            if clock.left() <= 0:
                skipped.append(name)
                continue
            try:
                results.append(time_training(method, preset, plan.batch, precision, compiled, naive, plan))
            except Exception as err:  # noqa: BLE001 - recorded, the check goes on
                errors.append(f"{name}: {type(err).__name__}: {err}"[:500])
            if plan.device.type == "cuda":
                torch.cuda.empty_cache()
    out: dict = {"runs": results, "errors": errors, "skipped": skipped}
    best = max(results, key=lambda r: r["pairs_per_s"], default=None)
    if best is not None:
        largest = {"batch": best["batch"], "pairs_per_s": best["pairs_per_s"]}
        for batch in plan.batch_search:  # the largest batch that fits, in the best mode
            if clock.left() <= 0:
                skipped.append(f"batch {batch}")
                break
            try:
                r = time_training(best["method"], best["preset"], batch, best["precision"], best["compiled"], False, plan)
                largest = {"batch": batch, "pairs_per_s": r["pairs_per_s"], "mfu": r["mfu"],
                           "peak_memory_gib": r["peak_memory_gib"]}
            except Exception as err:  # noqa: BLE001
                if not is_out_of_memory(err):
                    errors.append(f"batch {batch}: {type(err).__name__}: {err}"[:500])
                break
            finally:
                if plan.device.type == "cuda":
                    torch.cuda.empty_cache()
        out["largest_batch"] = {"method": best["method"], "preset": best["preset"], **largest}
        out["best"] = best
        if clock.left() > 0:
            v2 = [r for r in results if r["method"] == "croco_v2"] or results
            target = max(v2, key=lambda r: r["pairs_per_s"])
            try:
                out["profile"] = profile_top_kernels(target["method"], target["preset"], plan.batch,
                                                     target["precision"], plan)
            except Exception as err:  # noqa: BLE001
                errors.append(f"profile: {type(err).__name__}: {err}"[:500])
    return out


# ------------------------------------------------------------------ loader


def loader_section(plan: Plan, clock: Clock, train_rate: float | None) -> dict:
    """Loader pairs/s per worker count on a synthetic 256 px corpus (a bare machine has no corpus)."""
    rates, errors = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        shards = [str(p) for p in write_synthetic_corpus(tmp, shards=4, pairs_per_shard=32, size=256)]
        for workers in plan.loader_workers:
            if clock.left() <= 0:
                break
            try:
                loader = make_loader(shards, AugmentConfig(plan.loader_crop), plan.batch, seed=0,
                                     num_workers=workers, shuffle_buffer=32, pin_memory=plan.device.type == "cuda")
                it = iter(loader)
                next(it)
                t0 = time.perf_counter()
                for _ in range(plan.loader_batches):
                    batch = next(it)
                    batch["img1"].to(plan.device, non_blocking=True)
                rates[workers] = plan.loader_batches * plan.batch / (time.perf_counter() - t0)
                del it, loader
            except Exception as err:  # noqa: BLE001
                errors.append(f"{workers} workers: {type(err).__name__}: {err}"[:500])
    best = max(rates.values(), default=None)
    starved = None if best is None or train_rate is None else best < train_rate
    return {"pairs_per_s_by_workers": rates, "crop": plan.loader_crop, "train_pairs_per_s": train_rate,
            "gpu_starved": starved, "errors": errors}


# ------------------------------------------------------------------ rendering and study (subprocesses)


def run_command(argv: list[str], timeout_s: float, cwd: Path = REPO) -> dict:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=max(1.0, timeout_s), env=env)
        return {"command": " ".join(argv), "returncode": done.returncode, "seconds": time.perf_counter() - t0,
                "stdout": done.stdout[-8000:], "stderr": done.stderr[-4000:]}
    except subprocess.TimeoutExpired as err:
        return {"command": " ".join(argv), "returncode": None, "seconds": time.perf_counter() - t0,
                "stdout": (err.stdout or b"")[-8000:].decode(errors="replace") if isinstance(err.stdout, bytes)
                else (err.stdout or "")[-8000:], "stderr": f"timed out after {timeout_s:.0f} s"}


def rendering_section(plan: Plan, clock: Clock) -> dict:
    py = sys.executable
    half = clock.left() / 2
    fps = run_command([py, "benchmarks/render_fps.py", *plan.render_args], half)
    pairs = run_command([py, "benchmarks/pairs_per_second.py", *plan.pairs_args], clock.left())
    return {"render_fps": fps, "pairs_per_second": pairs}


STUDY_EDITS = (  # (pattern in configs/quickstart.toml, replacement): procedural corpus, small preset
    (r'^run_dir = .*$', None),
    (r'^preset = "tiny"$', 'preset = "small"'),
    (r'^workers = 2\b', 'workers = 8'),  # render processes: 16 cores
)


def study_config(out: Path, dry: bool) -> Path:
    """configs/quickstart.toml with its run folder in OUT and, on the GPU, the small preset and
    8 render workers."""
    text = (REPO / "configs" / "quickstart.toml").read_text()
    run_dir = (out / "study" / "run").resolve()
    for pattern, replacement in STUDY_EDITS:
        if replacement is None:
            replacement = f'run_dir = "{run_dir.as_posix()}"'
        elif dry:
            continue
        text, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"configs/quickstart.toml: no line matches {pattern!r}; update STUDY_EDITS")
    path = out / "study" / "study.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def study_section(plan: Plan, clock: Clock, out: Path) -> dict:
    config = study_config(out, dry=plan.study_command != "run")
    result = run_command([sys.executable, "-m", "pipeline.cli", plan.study_command, str(config)], clock.left())
    tables = sorted((out / "study" / "run").rglob("*.md")) if plan.study_command == "run" else []
    result["tables"] = {str(p.relative_to(out)): p.read_text()[:6000] for p in tables[:4]}
    return result


# ------------------------------------------------------------------ report


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({'dry run on CPU' if report['dry_run'] else 'GPU'})", "",
             f"Machine: {json.dumps(report['machine'])}", f"Peak used for MFU: {report['peak_tflops']:g} TFLOP/s; "
             f"wall time {report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget.", ""]
    training = report["sections"].get("training")
    if training:
        lines += ["## Training", "", "| model | precision | compile | attention | batch | pairs/s | MFU | peak GiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in training.get("runs", []):
            mem = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
            lines.append(f"| {r['method']}/{r['preset']} | {r['precision']} | {'yes' if r['compiled'] else 'no'} | "
                         f"{r['attention']} | {r['batch']} | {r['pairs_per_s']:.1f} | {100 * r['mfu']:.2f}% | {mem} |")
        if "largest_batch" in training:
            lines += ["", f"Largest batch that fits (best mode): {json.dumps(training['largest_batch'])}"]
        lines += [f"- {e}" for e in training.get("errors", [])] + [f"- skipped: {s}" for s in training.get("skipped", [])]
        lines.append("")
    loader = report["sections"].get("loader")
    if loader:
        rates = ", ".join(f"{w} workers {r:.1f}" for w, r in loader["pairs_per_s_by_workers"].items())
        lines += ["## Loader", "", f"pairs/s at {loader['crop']} px crops: {rates}; training "
                  f"{loader['train_pairs_per_s'] or 0:.1f} pairs/s; GPU starved: {loader['gpu_starved']}", ""]
    for name in ("rendering", "study"):
        section = report["sections"].get(name)
        if section:
            lines += [f"## {name.capitalize()}", ""]
            parts = section.values() if name == "rendering" else [section]
            for part in parts:
                lines += [f"`{part['command']}`: exit {part['returncode']} in {part['seconds']:.0f} s", "", "```",
                          part["stdout"][-3000:].strip() or part["stderr"][-1000:].strip(), "```", ""]
    for name, error in report["errors"].items():
        lines.append(f"- {name} failed: {error}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (no GPU needed)")
    ap.add_argument("--with-compile", action="store_true", help="dry run: include the torch.compile mode")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--budget-s", type=float, default=None, help="wall-time budget (default 480 GPU, 600 dry run)")
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        ap.error("no CUDA GPU here; use --dry-run to exercise the check on CPU")
    budget = args.budget_s or (600.0 if args.dry_run else 480.0)
    plan = (Plan.dry(budget, args.peak_tflops, args.with_compile) if args.dry_run
            else Plan.gpu(budget, args.peak_tflops))
    if plan.device.type == "cuda":
        set_cuda_fast_math()
    else:
        torch.set_num_threads(1)  # tiny models on CPU: one thread, no OpenMP spin-waits under load
    args.out.mkdir(parents=True, exist_ok=True)
    clock = Clock(budget)
    report: dict = {"dry_run": args.dry_run, "machine": machine(), "peak_tflops": args.peak_tflops,
                    "budget_s": budget, "sections": {}, "errors": {}}
    spent_share = 0.0
    for name in args.sections:
        spent_share += SHARES[name]
        chosen = [s for s in SECTIONS if s in args.sections]
        share = spent_share / sum(SHARES[s] for s in chosen)
        section_clock = Clock(max(0.0, share * budget - clock.elapsed()))
        try:
            if name == "training":
                report["sections"][name] = training_section(plan, section_clock)
            elif name == "loader":
                best = report["sections"].get("training", {}).get("best")
                report["sections"][name] = loader_section(plan, section_clock, best and best["pairs_per_s"])
            elif name == "rendering":
                report["sections"][name] = rendering_section(plan, section_clock)
            else:
                report["sections"][name] = study_section(plan, section_clock, args.out)
        except Exception as err:  # noqa: BLE001 - one section's failure must not lose the others
            report["errors"][name] = f"{type(err).__name__}: {err}"[:1000]
    report["seconds"] = clock.elapsed()
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pretraining several methods: one after another with every core, or all at once with one thread each.

  sequential  what `crocopipe pretrain` did: torchrun per method, one after the other, with
              OMP_NUM_THREADS = cores / nproc
  concurrent  every method's torchrun at once, OMP_NUM_THREADS = 1 each

Rounds alternate which mode goes first; each method trains from scratch into a fresh folder.
Prints wall and CPU time (the trainers and their loader workers included) per mode, their ratio
and each method's final loss.

  python benchmarks/pretrain_methods.py configs/quickstart.toml --corpus runs/quickstart/corpus --rounds 2
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def final_loss(out: Path) -> float | None:
    from rendering.layout import PretrainLayout
    from training.jsonl import read_records

    records, _ = read_records(PretrainLayout(out).metrics)
    return records[-1]["loss"] if records else None


def train(mode: str, cfg, methods: list[str], corpus: Path, folder: Path, threads: int) -> tuple[float, float, dict]:
    from training.launch import run_torchrun

    os.environ["OMP_NUM_THREADS"] = str(threads)
    quiet = lambda line: None  # noqa: E731
    wall, cpu = time.perf_counter(), children_cpu()
    if mode == "sequential":
        for method in methods:
            run_torchrun(cfg, method, corpus, folder / method, on_line=quiet)
    else:
        errors: list[BaseException] = []

        def one(method: str) -> None:
            try:
                run_torchrun(cfg, method, corpus, folder / method, on_line=quiet)
            except BaseException as err:  # reported after the others finish
                errors.append(err)

        workers = [threading.Thread(target=one, args=(m,)) for m in methods]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    return wall, cpu, {m: final_loss(folder / m) for m in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="run TOML with a [pretrain] section")
    parser.add_argument("--corpus", type=Path, required=True, help="a generated corpus folder")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from pipeline.config import load_run_config
    from pipeline.cores import available_cores

    cfg = load_run_config(args.config).pretrain
    if cfg is None:
        raise SystemExit(f"{args.config}: no [pretrain] section")
    methods = list(cfg.methods)
    cores = available_cores()
    tmp = Path(tempfile.mkdtemp(prefix="crocopipe-pretrain-"))
    modes = {"sequential": max(1, cores // cfg.nproc), "concurrent": 1}
    figures: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
            wall, cpu, losses = train(mode, cfg, methods, args.corpus.resolve(), tmp / f"{mode}-{r}", modes[mode])
            figures[mode].append((wall, cpu))
            loss_text = ", ".join(f"{m} {v:.4f}" for m, v in losses.items() if v is not None)
            print(f"round {r} {mode:<10} ({modes[mode]} thread(s) each): {wall:6.1f} s wall {cpu:6.1f} s CPU; "
                  f"final loss {loss_text}; load average {os.getloadavg()[0]:.1f}", flush=True)
            shutil.rmtree(tmp / f"{mode}-{r}", ignore_errors=True)
    med = {m: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for m, v in figures.items()}
    print(f"\n{len(methods)} methods ({', '.join(methods)}), {cfg.total_steps} steps each, {cores} cores; medians of "
          f"{args.rounds} rounds")
    for mode, (wall, cpu) in med.items():
        print(f"{mode:<10} {wall:7.1f} s wall {cpu:7.1f} s CPU")
    print(f"concurrent / sequential wall: {med['concurrent'][0] / med['sequential'][0]:.2f}x")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

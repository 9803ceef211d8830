"""Fixed cost of a flow run as a user meets it: `crocopipe generate` of a 1-pair corpus, end to end.

Each round runs, for this tree and for another checkout of the project (``--base``, e.g. a git
worktree of an older commit), alternating which goes first:

  new run folder   a fresh run folder: the command creates the run's Prefect database
  same run folder  the corpus deleted and generated again: the database exists (a resumed run)

Each is one `python -m pipeline.cli generate CONFIG --quiet` subprocess with PYTHONPATH at the
tree under test, timed in wall time and in CPU time (the command and every process it started and
reaped: render processes, the Prefect server). Prints the medians and the ratio this tree / base.

  python benchmarks/flow_fixed_cost.py --base /path/to/other/checkout --rounds 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CONFIG = """run_dir = "run"
[corpus]
pairs_per_scene = 1
pairs_per_shard = 1
val_fraction = 0.0
workers = {workers}
[corpus.scenes.procedural]
count = 1
first_seed = 3000
[corpus.sampler]
width = 32
height = 32
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_generate(tree: Path, config: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one generate command run with ``tree``'s code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(tree)
    cpu, wall = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", str(config), "--quiet"], cwd=tree,
                          env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"generate with {tree} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, cpu


def one_round(tree: Path, folder: Path, workers: int) -> dict[str, tuple[float, float]]:
    folder.mkdir(parents=True)
    config = folder / "run.toml"
    config.write_text(CONFIG.format(workers=workers))
    new = timed_generate(tree, config)
    shutil.rmtree(folder / "run" / "corpus")
    same = timed_generate(tree, config)
    return {"new run folder": new, "same run folder": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the other checkout of the project")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = args.base.resolve()
    if not (base / "pipeline" / "cli.py").is_file():
        raise SystemExit(f"--base {base}: not a checkout of this project (no pipeline/cli.py)")
    tmp = Path(tempfile.mkdtemp(prefix="crocopipe-fixed-"))
    trees = {"this tree": HERE, "base": base}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        for name in order:
            for case, figures in one_round(trees[name], tmp / f"{name.replace(' ', '-')}-{r}", args.workers).items():
                results[name].setdefault(case, []).append(figures)
                print(f"round {r} {name:<9} {case:<15} {figures[0]:6.1f} s wall {figures[1]:6.1f} s CPU", flush=True)
    print(f"\n{args.rounds} rounds, {args.workers} render processes, load average {os.getloadavg()[0]:.1f} at the end;"
          f" base = {base}")
    print(f"{'case':<16} {'this tree wall':>15} {'base wall':>10} {'ratio':>6} {'this tree CPU':>14} "
          f"{'base CPU':>9} {'ratio':>6}")
    for case in results["this tree"]:
        mine = [statistics.median(v) for v in zip(*results["this tree"][case])]
        theirs = [statistics.median(v) for v in zip(*results["base"][case])]
        print(f"{case:<16} {mine[0]:>13.1f} s {theirs[0]:>8.1f} s {mine[0] / theirs[0]:>6.2f} "
              f"{mine[1]:>12.1f} s {theirs[1]:>7.1f} s {mine[1] / theirs[1]:>6.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

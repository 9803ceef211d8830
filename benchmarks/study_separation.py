"""How far apart the methods of a seed study are, in units of their seed spread.

    python benchmarks/study_separation.py runs/study_cpu_correspondence --seeds 0 1 2 \
        --centred runs/centred-seed0.json runs/centred-seed1.json runs/centred-seed2.json

RUN_DIR is the study config's run_dir; seed k's results are read from ``RUN_DIR-seed<k>/eval``
(benchmarks/correspondence_study.py writes them there), so seeds that finished can be summarised
while later ones run. ``--centred`` adds the rows of benchmarks/correspondence_position_prior.py
``--json`` files (one per seed: raw and position-centred features on a subset of the val pairs).
For every metric: mean ± std (ddof 1) per method, and for each pair of methods the separation
(mean_A - mean_B) / pooled std with pooled std = sqrt((s_A^2 + s_B^2) / 2); "inf" when both
spreads are 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = (  # (task, key, label, scale)
    ("correspondence", "enc_recall_1p", "enc. recall@1p (%)", 100.0),
    ("correspondence", "enc_recall_2p", "enc. recall@2p (%)", 100.0),
    ("correspondence", "enc_recall_4p", "enc. recall@4p (%)", 100.0),
    ("correspondence", "enc_median_epe", "enc. median EPE (px)", 1.0),
    ("correspondence", "dec_recall_2p", "dec. recall@2p (%)", 100.0),
    ("correspondence", "dec_median_epe", "dec. median EPE (px)", 1.0),
    ("cross_view_gain", "relative_gain", "cross-view relative gain (%)", 100.0),
    ("depth", "abs_rel", "depth AbsRel", 1.0),
    ("depth", "delta1_median_scaled", "depth δ1 median-scaled (%)", 100.0),
)


def separation(a: list[float], b: list[float]) -> float:
    """(mean a - mean b) / pooled standard deviation (ddof 1); needs two values on each side."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"separation needs at least two seeds per method, got {len(a)} and {len(b)}")
    pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2.0)
    diff = float(np.mean(a) - np.mean(b))
    if pooled == 0.0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / pooled


def collect(run_dir: Path, seeds: list[int], methods: list[str]) -> dict[tuple[str, str], dict[int, float]]:
    """(method, label) -> {seed: value} from the seed folders' result files (missing ones skipped)."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for seed in seeds:
        for method in methods:
            for task, key, label, scale in METRICS:
                path = Path(f"{run_dir}-seed{seed}") / "eval" / method / task / f"seed-{seed}.json"
                if not path.is_file():
                    continue
                value = json.loads(path.read_text())["metrics"].get(key)
                if value is not None:
                    out.setdefault((method, label), {})[seed] = float(value) * scale
    return out


def collect_centred(files: list[Path]) -> dict[tuple[str, str], dict[int, float]]:
    out: dict[tuple[str, str], dict[int, float]] = {}
    for path in files:
        data = json.loads(path.read_text())
        for row in data["rows"]:
            for key, name, scale in (("recall_2p", "recall@2p (%)", 100.0), ("median_epe", "median EPE (px)", 1.0)):
                label = f"subset {row['features']}. {row['how']} {name}"
                out.setdefault((row["method"], label), {})[int(data["seed"])] = float(row[key]) * scale
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["croco_v2", "mae", "none"])
    parser.add_argument("--centred", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    for path in args.centred:
        if not path.is_file():
            parser.error(f"--centred: {path} does not exist")
    values = {**collect(args.run_dir, args.seeds, args.methods), **collect_centred(args.centred)}
    if not values:
        print(f"no results under {args.run_dir}-seed<k>/eval for seeds {args.seeds}", file=sys.stderr)
        return 1
    labels = list(dict.fromkeys(label for _, label in values))
    first = args.methods[0]
    others = args.methods[1:]
    print("| metric | " + " | ".join(f"{m} mean ± std (seeds)" for m in args.methods)
          + " | " + " | ".join(f"{first} vs {m} (pooled std)" for m in others) + " |")
    print("|---" * (1 + len(args.methods) + len(others)) + "|")
    for label in labels:
        cells, seps = [], []
        for m in args.methods:
            v = values.get((m, label), {})
            vals = [v[s] for s in sorted(v)]
            cells.append("n/a" if not vals else f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.2f} "
                         f"({' / '.join(f'{x:.2f}' for x in vals)})")
        a = [values.get((first, label), {}).get(s) for s in args.seeds]
        for m in others:
            b = [values.get((m, label), {}).get(s) for s in args.seeds]
            pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
            seps.append(f"{separation([x for x, _ in pairs], [y for _, y in pairs]):+.1f}" if len(pairs) >= 2 else "n/a")
        print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(seps) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

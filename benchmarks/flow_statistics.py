"""How large the ground-truth flow of a corpus's val pairs is, next to the model's patch size.

    python benchmarks/flow_statistics.py runs/study_cpu_correspondence/corpus --size 112 --patch 8

Prints percentiles of |flow| over covisible pixels (both directions of every val pair, resized
and centre-cropped to the model's input as the evaluation does), the share of pixels moving more
than 1, 2, 4 and 8 patch widths, and the zero-flow EPE (mean |flow|): the level a flow head must
beat. A flow head has to output displacements of this size from features on a patch grid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from evaluation.val_split import read_val_pairs, task_arrays

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=None)
    args = parser.parse_args(argv)
    data = task_arrays(read_val_pairs(args.corpus, args.max_pairs), "flow", args.size).arrays
    mag = np.linalg.norm(data["flow"][data["valid"]], axis=-1)
    print(f"{len(data['flow'])} flow samples at {args.size} px, {mag.size} covisible pixels "
          f"({100 * data['valid'].mean():.1f}% of all pixels)")
    print("|flow| px percentiles 10/25/50/75/90: "
          + " / ".join(f"{np.percentile(mag, q):.1f}" for q in (10, 25, 50, 75, 90)))
    print(f"zero-flow EPE (mean |flow|): {mag.mean():.2f} px")
    for k in (1, 2, 4, 8):
        print(f"moving more than {k} patch width(s) ({k * args.patch} px): {100 * np.mean(mag > k * args.patch):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

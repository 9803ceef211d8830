"""How much of the zero-shot correspondence is the position prior of absolute-position features?

    python benchmarks/correspondence_position_prior.py RUN_DIR --methods croco_v2 mae none --max-pairs 150
    python benchmarks/correspondence_position_prior.py RUN_DIR --every 4 --seed 1 --json out.json

For each method (RUN_DIR/pretrain/<method>/model.pt; `none` = random init, seeded with --seed) it extracts the
frozen per-patch features of the val pairs once and scores correspondence twice: on the raw
features, and on position-centred ones (each view's features minus their mean at the same grid
position over the whole set), which removes what every image shares at a position (an additive
sin-cos embedding and what it leaves in later layers). Prints recall@1p/2p and median EPE with the
zero-motion and chance references. ``--every K`` takes every K-th val pair (spread over all val
scenes, unlike ``--max-pairs``, which takes the first pairs in shard order); ``--json`` writes the
rows for later tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import torch

    from evaluation.correspondence import correspondence_metrics, patch_queries
    from evaluation.val_split import read_val_pairs, task_arrays
    from evaluation.runner import load_method_backbone
    from evaluation.zero_shot import patch_features
    from training.cross_view import normalise_views
    from training.models import load_backbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--methods", nargs="+", default=["croco_v2", "mae", "none"])
    parser.add_argument("--max-pairs", type=int, default=150, help="first N val pairs (0: all)")
    parser.add_argument("--every", type=int, default=1, help="then keep every K-th of them")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-init (none) backbone")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.every < 1 or args.max_pairs < 0:
        parser.error(f"--every must be >= 1 and --max-pairs >= 0, got {args.every} and {args.max_pairs}")
    torch.set_num_threads(args.threads)

    rows = []
    data = None
    for method in args.methods:
        if method == "none":
            ref, _ = load_backbone(args.run_dir / "pretrain" / args.methods[0] / "model.pt")
            net = load_method_backbone("none", None, ref.spec, args.seed)
        else:
            net, _ = load_backbone(args.run_dir / "pretrain" / method / "model.pt")
        if data is None:
            pairs = read_val_pairs(args.run_dir / "corpus", args.max_pairs or None)[::args.every]
            data = task_arrays(pairs, "correspondence", net.spec.img_size).arrays
            queries = patch_queries(data["flow"], data["valid"], net.spec.patch_size)
        t0 = time.perf_counter()
        feats: dict[str, tuple[list, list]] = {}
        with torch.no_grad():
            for start in range(0, len(data["img1"]), 16):
                sl = slice(start, start + 16)
                for name, (f1, f2) in patch_features(net.eval(), normalise_views(data["img1"][sl]),
                                                     normalise_views(data["img2"][sl])).items():
                    feats.setdefault(name, ([], []))
                    feats[name][0].append(f1.numpy())
                    feats[name][1].append(f2.numpy())
        for name, (a, b) in feats.items():
            f1, f2 = np.concatenate(a), np.concatenate(b)
            mean = np.concatenate([f1, f2]).mean(axis=0, keepdims=True)  # per grid position
            for how, (x1, x2) in (("raw", (f1, f2)), ("position-centred", (f1 - mean, f2 - mean))):
                m = correspondence_metrics(x1, x2, queries, net.spec.patch_size, data["covis"], data["rotation_deg"])
                rows.append((method, name, how, m))
        print(f"{method}: {time.perf_counter() - t0:.1f} s for {len(data['img1'])} directed pairs", flush=True)
    m0 = rows[0][3]
    print(f"references: chance recall@1p/2p {100 * m0['chance_recall_1p']:.1f} / {100 * m0['chance_recall_2p']:.1f} %, "
          f"zero motion {100 * m0['zero_motion_recall_1p']:.1f} / {100 * m0['zero_motion_recall_2p']:.1f} %, "
          f"zero-motion median EPE {m0['zero_motion_median_epe']:.2f} px; {m0['n_points']} points")
    print("| method | features | recall@1p (%) | recall@2p (%) | median EPE (px) |")
    print("|---|---|---|---|---|")
    for method, name, how, m in rows:
        print(f"| {method} | {name}, {how} | {100 * m['recall_1p']:.1f} | {100 * m['recall_2p']:.1f} | {m['median_epe']:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "run_dir": str(args.run_dir), "seed": args.seed, "max_pairs": args.max_pairs, "every": args.every,
            "rows": [{"method": method, "features": name, "how": how,
                      **{k: v for k, v in m.items() if isinstance(v, (int, float))}} for method, name, how, m in rows],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

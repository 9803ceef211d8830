"""Flow head experiments on a run's checkpoints: one protocol variant per hypothesis.

    python benchmarks/flow_protocol.py RUN_DIR --methods croco_v2 mae none \
        --variant base:protocol=finetune,steps=100 --variant lr3x:protocol=finetune,lr=3e-3,backbone_lr=3e-4 \
        --out flow_protocol.jsonl

RUN_DIR holds ``pretrain/<method>/model.pt`` and ``corpus/`` (a `crocopipe run` folder); ``none``
is a random-init CroCo v1 network seeded with ``--seed``. The flow data are those of the `flow`
task (the val split, split again by scene into head-train and test scenes, both directions of
every pair). A variant is ``NAME:key=value,...`` with keys ``protocol`` (probe / finetune),
``steps``, ``lr``, ``backbone_lr``, ``batch_size`` and ``head`` (the DPT head's width; default
the preset's). Each (method, variant) prints and appends one JSON line with the test EPE, the
zero-flow EPE and the constant-flow EPE (the head-train set's mean flow) on the same pixels, the
EPE on up to ``--train-eval`` head-train samples (does the head fit what it trains on?), and the
EPE per bin of the true motion in patch widths next to zero flow in the same bin.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MOTION_BINS = (0.0, 1.0, 2.0, 4.0, np.inf)  # |true flow| in patch widths
VARIANT_KEYS = {"protocol": str, "steps": int, "lr": float, "backbone_lr": float, "batch_size": int, "head": int}


def parse_variant(text: str) -> tuple[str, dict]:
    """'NAME:key=value,...' -> (NAME, {key: value}); a clear error for anything else."""
    name, _, rest = text.partition(":")
    if not name:
        raise ValueError(f"variant {text!r}: expected NAME:key=value,...")
    settings: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in VARIANT_KEYS:
            raise ValueError(f"variant {name!r}: {item!r} is not key=value with key one of {', '.join(VARIANT_KEYS)}")
        settings[key] = VARIANT_KEYS[key](value)
    return name, settings


def motion_bins(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, patch: int) -> list[dict]:
    """EPE of ``pred`` and of zero flow per bin of |gt| (patch widths), over covisible pixels."""
    mag = np.linalg.norm(gt, axis=-1) / patch
    err = np.linalg.norm(pred - gt, axis=-1)
    rows = []
    for lo, hi in zip(MOTION_BINS[:-1], MOTION_BINS[1:]):
        sel = valid & (mag >= lo) & (mag < hi)
        if sel.any():
            rows.append({"bin": f"{lo:g}-{hi:g}p", "share": float(sel.sum() / valid.sum()),
                         "epe": float(err[sel].mean()), "zero_flow_epe": float((mag[sel] * patch).mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    from evaluation.config import EvaluateConfig
    from evaluation.downstream import DownstreamModel, backbone_for_task, configure_protocol, count_parameters
    from evaluation.heads import default_head_features
    from evaluation.jobs import task_data
    from evaluation.metrics import flow_metrics
    from evaluation.runner import frozen_tokens, load_method_backbone, train_head
    from training.models import load_backbone, preset_spec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--methods", nargs="+", default=["croco_v2", "mae", "none"])
    parser.add_argument("--variant", action="append", required=True, help="NAME:key=value,... (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="head seed (and the random-init backbone's)")
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--train-eval", type=int, default=96, help="head-train samples scored after training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per (method, variant)")
    parser.add_argument("--preset", default=None,
                        help="model size of the run (e.g. tiny) instead of reading it from a checkpoint: "
                        "lets `--methods none` run before any pretraining has finished")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)

    if args.preset is not None:
        spec = preset_spec(args.preset)
    else:
        reference = next((m for m in args.methods if m != "none"), "croco_v2")
        spec = load_backbone(args.run_dir / "pretrain" / reference / "model.pt")[0].spec
    train, test, how, _ = task_data(str(args.run_dir / "corpus"), "flow", spec.img_size, args.max_pairs, 0.5)
    gt, valid = test.arrays["flow"], test.arrays["valid"]
    zero = flow_metrics(np.zeros_like(gt), gt, valid)["epe"]
    mean_flow = train.arrays["flow"][train.arrays["valid"]].mean(axis=0)
    constant = flow_metrics(np.broadcast_to(mean_flow, gt.shape), gt, valid)["epe"]
    sub = np.linspace(0, len(train) - 1, min(args.train_eval, len(train))).round().astype(int)
    print(f"flow: {len(train)} head-train / {len(test)} test samples (split by {how}); test zero-flow EPE "
          f"{zero:.2f} px, constant mean-flow EPE {constant:.2f} px", flush=True)

    for method in args.methods:
        checkpoint = None if method == "none" else args.run_dir / "pretrain" / method / "model.pt"
        backbone = load_method_backbone(method, checkpoint, spec, args.seed)
        if backbone.spec != spec:
            parser.error(f"{method}: checkpoint model {backbone.spec} is not the --preset {args.preset!r} model {spec}")
        frozen: tuple | None = None  # (train, test) tokens of the frozen backbone, shared by its probe variants
        for name, settings in variants:
            cfg = EvaluateConfig(tasks=["flow"], methods=[method], threads=args.threads,
                                 **{k: v for k, v in settings.items() if k != "head"})
            t0 = time.perf_counter()
            torch.manual_seed(args.seed)
            net, pretrained = backbone_for_task(method, "flow", copy.deepcopy(backbone))
            model = DownstreamModel("flow", net, settings.get("head") or default_head_features(net.spec.enc_dim))
            model.kind.prepare(model, train)
            groups = configure_protocol(model, pretrained, cfg.protocol)
            tokens = (None, None)
            if model.backbone_frozen():
                if frozen is None:
                    frozen = tuple(frozen_tokens(model, data, cfg.batch_size, torch.device("cpu")) for data in (train, test))
                tokens = frozen
            history = train_head(model, groups, train, cfg, args.seed, torch.device("cpu"), tokens[0])
            pred = _predict(model, test, cfg.batch_size, tokens[1])
            pred_train = _predict(model, _subset(train, sub), cfg.batch_size,
                                  None if tokens[0] is None else [t[torch.from_numpy(sub)] for t in tokens[0]])
            row = {
                "method": method, "variant": name, **cfg.model_dump(include={"protocol", "steps", "lr", "backbone_lr", "batch_size"}),
                "head_features": model.head.output[0].in_channels, "trainable_head": count_parameters(groups["head"]),
                "trainable_backbone": count_parameters(groups["backbone"]), "seed": args.seed,
                "epe": flow_metrics(pred, gt, valid)["epe"], "zero_flow_epe": zero, "constant_flow_epe": constant,
                "train_epe": flow_metrics(pred_train, train.arrays["flow"][sub], train.arrays["valid"][sub])["epe"],
                "train_zero_flow_epe": flow_metrics(np.zeros_like(pred_train), train.arrays["flow"][sub],
                                                    train.arrays["valid"][sub])["epe"],
                "bins": motion_bins(pred, gt, valid, spec.patch_size), "loss_first_last": [history[0][1], history[-1][1]],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            row["epe_over_zero"] = row["epe"] / zero
            print(f"{method:9s} {name:12s} test EPE {row['epe']:.2f} px ({100 * row['epe_over_zero']:.1f}% of zero flow) "
                  f"train EPE {row['train_epe']:.2f} / zero {row['train_zero_flow_epe']:.2f}; "
                  + "; ".join(f"{b['bin']} {b['epe']:.1f}/{b['zero_flow_epe']:.1f}" for b in row["bins"])
                  + f"; {row['seconds']:.0f} s", flush=True)
            if args.out is not None:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return 0


def _subset(data, idx: np.ndarray):
    from evaluation.val_split import TaskArrays

    return TaskArrays(data.task, {k: v[idx] for k, v in data.arrays.items()})


def _predict(model, data, batch_size: int, tokens=None) -> np.ndarray:
    import torch

    from evaluation.runner import batch_of

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            out.append(model.kind.predict(model, batch_of(data, idx, torch.device("cpu"), tokens))["flow"])
    return np.concatenate(out)


if __name__ == "__main__":
    sys.exit(main())

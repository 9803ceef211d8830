"""The study's summary tools: separation in seed-spread units, flow variants and motion bins."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_separation_is_the_mean_gap_over_the_pooled_std() -> None:
    sep = load("study_separation").separation
    a, b = [10.0, 12.0, 14.0], [4.0, 5.0, 6.0]  # means 12 and 5, std 2 and 1: pooled sqrt(2.5)
    assert sep(a, b) == pytest.approx(7.0 / math.sqrt(2.5))
    assert sep(b, a) == pytest.approx(-7.0 / math.sqrt(2.5))
    assert sep([1.0, 1.0], [0.0, 0.0]) == math.inf
    assert sep([1.0, 1.0], [1.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="two seeds"):
        sep([1.0], [2.0, 3.0])


def test_separation_table_reads_the_seed_folders(tmp_path, capsys) -> None:
    module = load("study_separation")
    base = tmp_path / "study"
    for seed, (v2, mae) in enumerate([(0.30, 0.50), (0.32, 0.52), (0.34, 0.54)]):
        for method, value in (("croco_v2", v2), ("mae", mae)):
            path = Path(f"{base}-seed{seed}") / "eval" / method / "correspondence" / f"seed-{seed}.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"metrics": {"enc_recall_2p": value}}))
    assert module.main([str(base), "--methods", "croco_v2", "mae"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| enc. recall@2p"))
    assert "32.00 ± 2.00 (30.00 / 32.00 / 34.00)" in row
    assert row.rstrip(" |").endswith("-10.0")  # 20 points apart, std 2 on both sides


def test_flow_variant_parsing_and_motion_bins() -> None:
    module = load("flow_protocol")
    assert module.parse_variant("ft:protocol=finetune,steps=400,lr=3e-3,head=128") == (
        "ft", {"protocol": "finetune", "steps": 400, "lr": 3e-3, "head": 128})
    with pytest.raises(ValueError, match="key one of"):
        module.parse_variant("ft:stepz=3")
    with pytest.raises(ValueError, match="NAME:key=value"):
        module.parse_variant(":steps=3")
    gt = np.zeros((1, 1, 3, 2))
    gt[0, 0, :, 0] = [4.0, 12.0, 40.0]  # 0.5, 1.5 and 5 patch widths at patch 8
    pred = np.zeros_like(gt)
    pred[0, 0, 1, 0] = 12.0  # exact on the middle pixel only
    rows = {r["bin"]: r for r in module.motion_bins(pred, gt, np.ones((1, 1, 3), bool), 8)}
    assert set(rows) == {"0-1p", "1-2p", "4-infp"}
    assert rows["1-2p"]["epe"] == 0.0 and rows["1-2p"]["zero_flow_epe"] == 12.0
    assert rows["4-infp"]["epe"] == rows["4-infp"]["zero_flow_epe"] == 40.0
    assert rows["0-1p"]["share"] == pytest.approx(1 / 3)

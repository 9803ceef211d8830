"""The zero-shot tasks in the evaluation harness: every method through the same code, results
that say what is undefined, and the table columns (directions, px thresholds, n/a, bins)."""

import csv

import numpy as np
import pytest
import torch

from evaluation.config import EvaluateConfig
from evaluation.val_split import task_arrays
from evaluation.runner import load_method_backbone, write_result
from evaluation.tables import write_tables
from rendering.layout import RunLayout
from evaluation.zero_shot import run_zero_shot
from tests.test_eval_correspondence import _plane_pair
from training.models import build_model, preset_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")
METHODS = ["croco_v1", "croco_v2", "mae", "none"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Zero-shot results of every method (test preset, 32 px, patch 4) on synthetic plane pairs."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run")
    pairs = [_plane_pair(k, key=f"z{k}", yaw_deg=10.0 * k) for k in (1, 2, 3)]
    data = {t: task_arrays(pairs, t, 32) for t in ("correspondence", "cross_view_gain")}
    cfg = EvaluateConfig(tasks=["correspondence", "cross_view_gain"], methods=METHODS, seeds=[0, 1])
    spec = preset_spec("test")
    out = {}
    for m in METHODS:
        for s in cfg.seeds:
            torch.manual_seed(s)
            backbone = load_method_backbone(m, None, spec, s) if m == "none" else build_model(m, "test")
            for t in cfg.tasks:
                r = run_zero_shot(t, m, backbone, data[t], cfg, s, torch.device("cpu"))
                write_result(RunLayout(run).result(m, t, s), r)
                out[(m, t, s)] = r
    return run, out


def test_every_method_runs_the_same_harness(results):
    _, out = results
    for m in ("croco_v1", "croco_v2", "none"):
        metrics = out[(m, "correspondence", 0)]["metrics"]
        assert {"enc_recall_1p", "dec_recall_8p", "enc_median_epe", "dec_median_epe"} <= set(metrics)
        assert np.isfinite(out[(m, "cross_view_gain", 0)]["metrics"]["gain"])
    mae = out[("mae", "correspondence", 0)]
    assert "enc_recall_1p" in mae["metrics"] and "dec_recall_1p" not in mae["metrics"]
    assert "single-view decoder" in mae["undefined"]["dec"]
    gain = out[("mae", "cross_view_gain", 0)]
    assert gain["metrics"] == {} and "no reference view" in gain["undefined"]["all"]
    assert out[("croco_v1", "correspondence", 0)]["thresholds_px"] == {
        "recall_1p": 4.0, "recall_2p": 8.0, "recall_4p": 16.0, "recall_8p": 32.0}
    # deterministic given the weights; the random-init baseline changes with the seed
    assert out[("croco_v2", "correspondence", 0)]["metrics"] == out[("croco_v2", "correspondence", 1)]["metrics"]
    assert out[("none", "correspondence", 0)]["metrics"] != out[("none", "correspondence", 1)]["metrics"]


@pytest.mark.slow
def test_tables_state_directions_thresholds_and_undefined(results):
    run, _ = results
    write_tables(run, METHODS, ["correspondence", "cross_view_gain"], [0, 1], {"protocol": "probe", "steps": 0})
    md = (run / "tables" / "results.md").read_text()
    assert "correspondence: enc. recall@1p = 4 px (%) ↑" in md and "correspondence: dec. median EPE (px) ↓" in md
    assert "cross_view_gain: gain ↑" in md and "El Banani et al." in md
    assert "(zero motion) gives median EPE" in md
    mae_row = next(l for l in md.splitlines() if l.startswith("| MAE |"))
    assert mae_row.count("n/a") == 5 + 3  # decoder correspondence columns + every cross-view column
    assert mae_row.strip(" |").split(" | ")[-3:] == ["n/a"] * 3  # cross-view gain: undefined, never 0
    assert "n/a = undefined, not zero" in md and "co-visibility [0.6, 0.8)" in md
    assert "| CroCo v2 / dec |" in md and "| MAE / dec |" not in md
    with open(run / "tables" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    mae_gain = next(r for r in rows if r["method"] == "mae" and r["metric"] == "gain")
    assert mae_gain["values"] == "" and "no reference view" in mae_gain["undefined"]
    assert next(r for r in rows if r["metric"] == "enc_median_epe")["higher_is_better"] == "False"
    assert (run / "tables" / "results.png").stat().st_size > 5000


def test_zero_shot_fingerprint_ignores_head_settings():
    spec = preset_spec("test").to_dict()
    a, b = EvaluateConfig(steps=10), EvaluateConfig(steps=99, lr=0.5)
    assert a.fingerprint(spec, "correspondence") == b.fingerprint(spec, "correspondence")
    assert a.fingerprint(spec, "depth") != b.fingerprint(spec, "depth")
    mutual = EvaluateConfig(steps=10, matching="mutual")
    assert mutual.fingerprint(spec, "correspondence") != a.fingerprint(spec, "correspondence")
    assert mutual.fingerprint(spec, "depth") == a.fingerprint(spec, "depth")
    with pytest.raises(ValueError, match="matching"):
        EvaluateConfig(matching="nearest")


def test_position_centring_removes_a_position_code():
    """Features = a strong code of the grid position + an exact code of the 3-D point: raw
    matching follows the position (zero motion), centred matching finds the true points."""
    from evaluation.correspondence import correspondence_metrics, patch_queries
    from evaluation.zero_shot import position_centred
    from tests.test_eval_correspondence import PATCH, _arrays_and_features

    import dataclasses

    rng = np.random.default_rng(5)
    pairs = []
    for i, k in enumerate((1, 2, 3, 1, 2, 3, 1, 2)):
        p = _plane_pair(k, key=f"c{i}")
        move = np.eye(4)
        move[:2, 3] = rng.uniform(-3, 3, 2)  # both cameras moved: other 3-D points at every position
        pairs.append(dataclasses.replace(p, cam2world1=move @ p.cam2world1, cam2world2=move @ p.cam2world2))
    a, f1, f2 = _arrays_and_features(pairs)
    code = 10.0 * np.random.default_rng(0).normal(size=(1, f1.shape[1], 16))
    pad = np.zeros(f1.shape[:2] + (16,))
    g1 = np.concatenate([f1, pad], -1) + np.concatenate([np.zeros_like(f1[:1]), code], -1)
    g2 = np.concatenate([f2, pad], -1) + np.concatenate([np.zeros_like(f2[:1]), code], -1)
    q = patch_queries(a["flow"], a["valid"], PATCH)
    raw = correspondence_metrics(g1, g2, q, PATCH, a["covis"], a["rotation_deg"])
    assert raw["median_epe"] == pytest.approx(raw["zero_motion_median_epe"])  # the position wins
    c1, c2 = position_centred(g1, g2)
    centred = correspondence_metrics(c1, c2, q, PATCH, a["covis"], a["rotation_deg"])
    assert centred["recall_1p"] > 0.9 > raw["recall_1p"]
    spec = preset_spec("test").to_dict()
    assert EvaluateConfig(position_centred=True).fingerprint(spec, "correspondence") != \
        EvaluateConfig().fingerprint(spec, "correspondence")

"""`crocopipe plan`: every shipped config plans, the FLOP model equals torch's counter, and the
counts equal what a micro run does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from pipeline.cli import app
from training.flops import binocular_forward_flops, monocular_forward_flops, pretrain_forward_flops
from training.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.toml"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_configs_are_shipped():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in SHIPPED}
    assert {"quickstart.toml", "paper/croco_v1.toml", "paper/croco_v2_vitb_small.toml", "paper/croco_v2_vitb_base.toml",
            "paper/croco_v2_vitl_base.toml", "paper/mae.toml", "study_cpu_correspondence.toml"} <= names


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_plan_succeeds_on_every_shipped_config(config):
    result = CliRunner().invoke(app, ["plan", str(config), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    names = [s["name"] for s in plan["stages"]]
    assert names[0] == "generate" and any(n.startswith("pretrain ") for n in names)
    for stage in plan["stages"][1:]:
        if stage["name"].startswith("pretrain "):
            assert stage["facts"]["optimiser_steps"] > 0 and stage["facts"]["flops_per_step"] > 0
            assert stage["estimates"]["gpu_hours"] > 0
    assert any("TFLOP/s" in a for a in plan["assumptions"])


def test_paper_recipe_numbers():
    plan = json.loads(CliRunner().invoke(app, ["plan", str(ROOT / "configs/paper/croco_v1.toml"), "--json"]).output)
    gen, pre = plan["stages"][0]["facts"], plan["stages"][1]["facts"]
    assert gen["train_pairs"] == 1_944_000 and gen["units"] == 2 * 1984
    assert pre["pairs_per_step"] == 256 and round(pre["epochs_of_train_pairs"]) == 400
    assert pre["warmup_steps"] == 40 * 7594 and pre["preset"] == "base" and pre["crop"] == 224
    v2 = json.loads(CliRunner().invoke(app, ["plan", str(ROOT / "configs/paper/croco_v2_vitl_base.toml"), "--json"]).output)
    facts = v2["stages"][1]["facts"]
    assert facts["pairs_per_step"] == 512 and round(facts["epochs_of_train_pairs"]) == 125 and facts["preset"] == "large"


def test_plan_of_absent_dataset_without_assumption_is_refused(tmp_path):
    text = (ROOT / "configs/paper/croco_v1.toml").read_text().replace("assumed_scenes = 1984", "")
    config = tmp_path / "run.toml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["plan", str(config)])
    assert result.exit_code == 2
    assert "hm3d dataset root /data/scene_datasets/hm3d does not exist" in result.output
    assert "set [plan] assumed_scenes" in result.output


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["test", "tiny"])
@pytest.mark.parametrize("method", ["croco_v1", "croco_v2", "mae"])
def test_flop_model_equals_torch_counter(method, preset):
    torch.manual_seed(0)
    model = build_model(method, preset)
    model.set_naive_attention(True)  # torch's counter does not see inside the fused CPU attention kernel
    s = model.spec
    x = torch.randn(2, 3, s.img_size, s.img_size)
    with torch.no_grad():
        assert _counted(lambda: model(x, x)) == 2 * pretrain_forward_flops(method, s, model.mask_ratio)
        assert _counted(lambda: model.encode(x)) == monocular_forward_flops(s) * 2
        if method != "mae":
            def both():
                f1, p1, _ = model.encode(x)
                f2, p2, _ = model.encode(x)
                model.decode(f1, p1, f2, p2)
            assert _counted(both) == 2 * binocular_forward_flops(s)
    step = _counted(lambda: model(x, x).loss.backward())
    # backward ~ 2x forward (a little less: no input gradient for the patch embedding)
    assert step == pytest.approx(3 * 2 * pretrain_forward_flops(method, s, model.mask_ratio), rel=0.05)


# tests/conftest.py TINY_RUN with these changes
MICRO = {
    "corpus": {"pairs_per_scene": 3},
    "pretrain": {"methods": ["croco_v1", "mae"], "accumulation": 2, "epochs": 3, "checkpoint_every": 100,
                 "log_every": 1, "cross_view_every": 0},
    "evaluate": {"tasks": ["correspondence", "pose"], "seeds": [0, 1], "batch_size": None, "threads": None},
}


@pytest.mark.slow
def test_plan_counts_equal_a_micro_run(tmp_path, run_toml):
    import pyarrow.parquet as pq

    from evaluation.plan import plan_jobs
    from pipeline.config import load_run_config
    from pipeline.corpus.build import merge_corpus, prepare_corpus_dir
    from pipeline.corpus.plan import plan_units
    from pipeline.corpus.unit import run_unit
    from pipeline.resolved import resolve_evaluation
    from pipeline.run_plan import plan_run
    from training.train import train

    config = tmp_path / "run.toml"
    config.write_text(run_toml(**MICRO))
    run = load_run_config(config)
    plan = plan_run(run)
    assert not (tmp_path / "run").exists()  # planning writes nothing

    units = plan_units(run.corpus)
    prepare_corpus_dir(run.corpus_dir, run.corpus, units)
    for u in units:
        run_unit(u.as_dict(), str(run.corpus_dir), run.corpus.model_dump_json())
    merge_corpus(run.corpus_dir, run.corpus, units, make_card=False)
    manifest = pq.read_table(run.corpus_dir / "manifest.parquet").to_pydict()
    gen = plan.stage("generate").facts
    assert gen["units"] == len(list((run.corpus_dir / "units").glob("*.parquet"))) == 4
    assert gen["shards"] == len(list((run.corpus_dir / "shards").rglob("*.tar")))
    for split in ("train", "val"):
        assert gen[f"{split}_pairs"] == sum(s == split for s in manifest["split"])
        assert gen[f"{split}_shards"] == len(list((run.corpus_dir / "shards" / split).glob("*.tar")))
    assert gen["pairs"] == len(manifest["split"]) == 6

    for method in run.pretrain.methods:
        out = run.run_dir / "pretrain" / method
        summary = train(run.pretrain, method, run.corpus_dir, out)
        facts = plan.stage(f"pretrain {method}").facts
        ranks = json.loads((out / "ranks" / "rank-0.json").read_text())
        assert facts["optimiser_steps"] == summary["steps"] == ranks["steps_taken"] == 3
        assert facts["pairs_seen"] == ranks["samples_seen"] == 3 * 2 * 2

    evaluation = resolve_evaluation(run)
    assert plan.stage("evaluate").facts["jobs"] == len(plan_jobs(run.layout, evaluation.config)) == 8

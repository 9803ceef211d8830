"""`crocopipe evaluate` end to end on a tiny ray-cast val corpus (subprocess: its own Prefect home)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_eval_ground_truth import write_val_corpus
from training.models import build_model

METHODS = ["croco_v1", "croco_v2", "mae", "none"]

# tests/conftest.py TINY_RUN with these changes: an evaluation-only run (the checkpoints are
# written here, pretraining keeps its defaults), its corpus at the default size and workers
RUN = {
    "corpus": {"pairs_per_scene": 3, "pairs_per_shard": 3, "val_fraction": None, "workers": None, "sampler": None},
    "pretrain": {key: None for key in ("methods", "batch_size", "epochs", "steps_per_epoch", "warmup_epochs",
                                       "num_workers", "shuffle_buffer", "checkpoint_every")},
    "evaluate": {"methods": None, "tasks": ["depth", "flow", "pose"], "steps": 3, "batch_size": 4, "threads": None},
}


def _checkpoint(run_dir: Path, method: str) -> None:
    model = build_model(method, "test")
    out = run_dir / "pretrain" / method
    out.mkdir(parents=True)
    args = {"method": method, "spec": model.spec.to_dict(), "mask_ratio": model.mask_ratio}
    torch.save({"model": model.state_dict(), "model_args": args, "step": 0, "config": {}}, out / "model.pt")


def _cli(config: Path, *extra: str):
    """In-process invocation, for paths that finish before any Prefect server would start."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(config), *extra])
    result.returncode = result.exit_code
    return result


def _evaluate(config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # shared CPUs: one thread avoids spin contention
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "evaluate", str(config), *extra],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def run(tmp_path, run_toml):
    config = tmp_path / "run.toml"
    config.write_text(run_toml(**RUN))
    run_dir = tmp_path / "run"
    write_val_corpus(run_dir / "corpus", pairs_per_scene=2)
    for m in METHODS[:3]:
        _checkpoint(run_dir, m)
    return config, run_dir


@pytest.mark.slow
def test_evaluate_fills_table_and_second_run_does_no_work(run):
    config, run_dir = run
    first = _evaluate(config)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "12 evaluations (0 already done)" in first.stdout
    results = sorted((run_dir / "eval").rglob("seed-*.json"))
    assert len(results) == 4 * 3
    r = json.loads((run_dir / "eval" / "mae" / "flow" / "seed-0.json").read_text())
    assert r["split_by"] == "scene" and r["n_test"] > 0 and r["metrics"]["epe"] >= 0
    md = (run_dir / "tables" / "results.md").read_text()
    rows = [l for l in md.splitlines() if l.startswith("| ")]
    assert len(rows) == 5 and all("nan" not in l for l in rows)
    assert all(c.strip() for l in rows for c in l.strip("|").split("|"))
    mtimes = [p.stat().st_mtime_ns for p in results]

    second = _cli(config)
    assert second.returncode == 0, second.output[-3000:]
    assert "12 evaluations (12 already done); tables up to date" in second.output
    assert [p.stat().st_mtime_ns for p in results] == mtimes

    # changed settings never silently reuse (or overwrite) results made with the old ones
    config.write_text(config.read_text().replace("steps = 3", "steps = 4"))
    stale = _cli(config)
    assert stale.returncode == 2 and "other [evaluate] settings" in stale.output
    assert [p.stat().st_mtime_ns for p in results] == mtimes


def test_bad_inputs_give_clear_errors(run, tmp_path):
    config, run_dir = run
    bad = _cli(config, "--task", "segmentation")
    assert bad.returncode == 2 and "unknown task ['segmentation']; allowed: depth, flow, pose, correspondence, cross_view_gain, nyuv2" in bad.output

    (run_dir / "pretrain" / "mae" / "model.pt").unlink()
    missing = _cli(config)
    assert missing.returncode == 2
    assert "missing pretraining checkpoint" in missing.output and "pretrain/mae/model.pt" in missing.output

    for shard in (run_dir / "corpus" / "shards" / "val").iterdir():
        shard.rename(run_dir / "corpus" / shard.name)
    no_val = _cli(config, "--method", "none")
    assert no_val.returncode == 2 and "has no val split" in no_val.output
    assert not (run_dir / "eval").exists()  # nothing was started
    assert not (run_dir / "prefect").exists()  # errors come before any Prefect set-up

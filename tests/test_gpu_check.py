"""The prepared GPU check runs end to end on CPU in its dry-run mode and writes its report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_measures_training_and_loader_and_writes_json_and_markdown(tmp_path, capsys) -> None:
    check = load_check()
    assert check.main([str(tmp_path), "--dry-run", "--sections", "training", "loader"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    training = report["sections"]["training"]
    assert not training["errors"] and not report["errors"]
    modes = {(r["method"], r["precision"], r["attention"]) for r in training["runs"]}
    assert ("croco_v2", "bf16", "fused") in modes and ("croco_v1", "fp32", "naive") in modes
    for r in training["runs"]:
        assert r["pairs_per_s"] > 0 and r["gflop_per_pair"] > 0
        assert r["mfu"] == pytest.approx(r["pairs_per_s"] * r["gflop_per_pair"] * 1e9 / 989e12)
    assert training["largest_batch"]["batch"] == 4 and "aten::" in training["profile"]
    loader = report["sections"]["loader"]
    assert set(loader["pairs_per_s_by_workers"]) == {"0", "1"} and loader["gpu_starved"] is False
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| croco_v2/test | bf16 | no | fused | 2 |" in markdown and "## Loader" in markdown
    assert "# GPU check (dry run on CPU)" in capsys.readouterr().out


def test_study_config_is_the_quickstart_in_the_output_folder(tmp_path) -> None:
    check = load_check()
    gpu = check.study_config(tmp_path, dry=False).read_text()
    assert f'run_dir = "{(tmp_path / "study" / "run").resolve().as_posix()}"' in gpu and 'preset = "small"' in gpu
    assert "\nworkers = 8" in gpu
    assert 'preset = "tiny"' in check.study_config(tmp_path, dry=True).read_text()


def test_without_a_gpu_the_full_check_refuses_clearly(tmp_path, capsys) -> None:
    check = load_check()
    if check.torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        check.main([str(tmp_path)])
    assert "no CUDA GPU here; use --dry-run" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()

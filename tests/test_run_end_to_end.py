"""`crocopipe run` for real, from an empty folder: every stage through its Prefect subflow (one
embedded server for the whole command), the table filled, and a second invocation that does no work."""

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# tests/conftest.py TINY_RUN with these changes
RUN = {"corpus": {"pairs_per_scene": 3, "pairs_per_shard": 3}, "evaluate": {"tasks": ["depth", "flow", "pose"]}}


def _crocopipe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=540)


@pytest.mark.slow
def test_run_from_scratch_fills_the_table_and_a_second_run_does_no_work(tmp_path, run_toml):
    config = tmp_path / "run.toml"
    config.write_text(run_toml(**RUN))
    first = _crocopipe("run", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("generate", "pretrain", "evaluate"):
        assert f"{stage}: done" in first.stdout, first.stdout
    # Not a terminal: plain progress lines, no Prefect log line in between, a clean exit.
    assert "generate: 2/2 units" in first.stderr and "evaluate: 6/6 jobs" in first.stderr, first.stderr[-3000:]
    assert not re.search(r"\| (INFO|WARNING|ERROR) +\|", first.stderr), first.stderr[-3000:]
    assert "Error logging to API" not in first.stderr + first.stdout

    run_dir = tmp_path / "run"
    rows = list(csv.DictReader((run_dir / "tables" / "results.csv").open()))
    assert {(r["method"], r["task"]) for r in rows} == {
        (m, t) for m in ("croco_v1", "none") for t in ("depth", "flow", "pose")
    }
    assert all(r["mean"] and math.isfinite(float(r["mean"])) for r in rows)
    from evaluation.tables import METHOD_LABELS

    markdown = (run_dir / "tables" / "results.md").read_text()
    assert all(METHOD_LABELS[m] in markdown for m in ("croco_v1", "none"))
    assert (run_dir / "corpus" / "manifest.parquet").exists()
    assert (run_dir / "pretrain" / "croco_v1" / "model.pt").exists()

    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "prefect" not in p.parts}
    second = _crocopipe("run", str(config), cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "is complete" in second.stdout
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "prefect" not in p.parts}
    assert after == before

"""`crocopipe generate` end to end through Prefect: SIGKILL part-way, resume, complete history.

The command runs in a subprocess against a Prefect server started with `prefect server start`
(tests/conftest.py prefect_server: one server for the test session keeps the test within its time
budget; without PREFECT_API_URL the command starts the same server application itself). The uninterrupted
reference is built by the same unit functions without Prefect; the killed-and-resumed corpus
must match it exactly (manifest rows and shard sha256).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyarrow.parquet as pq

from conftest import prefect_client_env as _env
from pipeline.corpus import verify_corpus
from test_corpus import build_corpus, shard_hashes, write_config

UNITS = 8  # 2 scenes x 8 pairs, 2 pairs per shard




def _generate(config: Path, api_url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "generate", str(config)],
        env=_env(api_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _task_runs_of_last_flow_run(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        (flow_run_id,) = con.execute("SELECT id FROM flow_run ORDER BY created DESC LIMIT 1").fetchone()
        return con.execute("SELECT name, state_type FROM task_run WHERE flow_run_id = ?", (flow_run_id,)).fetchall()


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, prefect_server):
    api_url, database = prefect_server
    extra = "pairs_per_scene = 8"
    reference_cfg = write_config(tmp_path, run_dir="reference")
    text = reference_cfg.read_text().replace("pairs_per_scene = 4", extra)
    reference_cfg.write_text(text)
    crashed_cfg = tmp_path / "crashed.toml"
    # same corpus content; one worker so that units finish one by one
    crashed_cfg.write_text(text.replace('run_dir = "reference"', 'run_dir = "crashed"').replace("workers = 2", "workers = 1"))

    corpus = tmp_path / "crashed" / "corpus"
    proc = _generate(crashed_cfg, api_url)
    deadline = time.monotonic() + 240
    while not list((corpus / "units").glob("*.parquet")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no unit finished in time"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its render workers
    proc.wait(timeout=30)
    proc.stdout.close()
    done = len(list((corpus / "units").glob("*.parquet")))
    assert 1 <= done < UNITS and not (corpus / "manifest.parquet").exists()

    # A finished unit whose shard disappears must be redone, although Prefect cached its task.
    first_unit = sorted((corpus / "units").glob("*.parquet"))[0].stem
    lost = next(p for p in corpus.glob("shards/*/pairs-*.tar") if first_unit in _unit_of(corpus, p))
    lost.unlink()

    resumed = _generate(crashed_cfg, api_url)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "task runs recorded in Prefect" in output

    reference = build_corpus(reference_cfg)
    # Same pairs, same bytes as the uninterrupted run; nothing temporary left among the shards.
    assert pq.read_table(corpus / "manifest.parquet").to_pylist() == pq.read_table(reference / "manifest.parquet").to_pylist()
    assert shard_hashes(corpus) == shard_hashes(reference) and len(shard_hashes(corpus)) == UNITS
    assert not [p for p in corpus.rglob("*") if p.name.endswith(".tmp")]
    assert verify_corpus(corpus).ok

    # The Prefect history is complete once the command has returned: every unit + the merge.
    runs = _task_runs_of_last_flow_run(database)
    assert len(runs) == UNITS + 1 and {state for _, state in runs} == {"COMPLETED"}, runs
    assert sum(name.startswith("unit ") for name, _ in runs) == UNITS

    # Nothing left to do: the command answers without starting Prefect.
    started = time.monotonic()
    again = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", str(crashed_cfg)], env=_env(api_url),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stdout + again.stderr
    assert "Beginning flow run" not in again.stdout + again.stderr and time.monotonic() - started < 60


def _unit_of(corpus: Path, shard: Path) -> str:
    """The unit id that wrote ``shard`` (from plan.json)."""
    import json

    rel = shard.relative_to(corpus).as_posix()
    for unit in json.loads((corpus / "plan.json").read_text())["units"]:
        if f"shards/{unit['split']}/pairs-{unit['shard_index']:06d}.tar" == rel:
            return unit["unit_id"]
    return ""

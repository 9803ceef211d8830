"""What a user sees: `crocopipe generate` and `run` under a pseudo-terminal draw the live display
with no Prefect log lines in between and exit without "Error logging to API"; the run's Prefect
database then holds the parent flow's last log line, and `crocopipe ui` serves that history."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# tests/conftest.py TINY_RUN with these changes
RUN = {"evaluate": {"methods": ["croco_v1"], "tasks": ["depth"]}}
PREFECT_LINE = re.compile(r"\| (INFO|WARNING|ERROR|DEBUG) +\|")


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TERM": "xterm-256color",
           "COLUMNS": "150", "LINES": "40"}
    env.pop("PREFECT_API_URL", None)
    return env


def run_in_pty(args: list[str], cwd: Path, timeout: float = 540) -> tuple[int, str]:
    """Run ``crocopipe ARGS`` with a pseudo-terminal as stdin/stdout/stderr; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "pipeline.cli", *args], _env())
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_live_display_clean_exit_full_history_and_the_ui(tmp_path, run_toml):
    (tmp_path / "run.toml").write_text(run_toml(**RUN))
    started = time.monotonic()
    code, out = run_in_pty(["generate", "run.toml"], tmp_path)
    assert code == 0, out[-3000:]
    assert "generate" in out and "2/2" in out and "━" in out and "ETA" in out  # the rich display
    assert not PREFECT_LINE.search(out), out[-3000:]
    assert "Error logging to API" not in out
    code, out = run_in_pty(["run", "run.toml"], tmp_path)
    assert code == 0, out[-3000:]
    for stage in ("pretrain", "evaluate"):
        assert re.search(stage + r".*1/1", out), out[-3000:]
    assert "skipped (corpus complete)" in out and "total:" in out
    assert not PREFECT_LINE.search(out) and "Error logging to API" not in out, out[-3000:]
    assert time.monotonic() - started < 500  # no minute-long hang at exit

    run_dir = tmp_path / "run"
    assert "Finished in state Completed" in (run_dir / "prefect" / "prefect.log").read_text()
    db = sqlite3.connect(run_dir / "prefect" / "prefect.db")
    names = {name for (name,) in db.execute("select name from flow_run")}
    assert {"run run.toml", "pretrain croco_v1", "evaluate run"} <= names, names
    (last,) = db.execute(
        "select l.message from log l join flow_run r on r.id = l.flow_run_id "
        "where r.name = 'run run.toml' and l.task_run_id is null order by l.timestamp desc limit 1").fetchone()
    assert last.startswith("Finished in state Completed"), last  # the parent flow's last line
    db.close()

    ui = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "ui", str(run_dir)], cwd=tmp_path, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        api = None
        for line in ui.stdout:
            match = re.search(r"\(API (http://127\.0\.0\.1:\d+/api);", line)
            if match:
                api = match.group(1)
                break
        assert api, "crocopipe ui printed no API address"
        with urllib.request.urlopen(f"{api}/health", timeout=10) as response:
            assert response.status == 200
        request = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = {run["name"] for run in json.load(response)}
        assert "run run.toml" in served
    finally:
        ui.terminate()
        assert ui.wait(timeout=60) is not None

"""Crash safety without Prefect: the run lock, parent-death signals, process trees, torn JSON
Lines logs and temporary-file debris. (Commands killed for real: test_crash_commands.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.run_lock import INHERIT_ENV, LOCK_FILE, RunLock, RunLockedError
from rendering.processes import descendants, parent_of, tied_command
from rendering.atomic import remove_temporary_files, temporary_files
from training.jsonl import JsonlError, read_records

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rindex(b")") + 2:].split()[0] != b"Z"


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


# ---------------------------------------------------------------- run lock


def test_second_writer_is_refused_naming_the_holder(tmp_path, monkeypatch):
    monkeypatch.delenv(INHERIT_ENV, raising=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pipeline.run_lock import RunLock
            RunLock({str(tmp_path)!r}, purpose="pretrain").acquire()
            print("held", flush=True)
            time.sleep(60)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path, purpose="evaluate").acquire()
        assert f"crocopipe pretrain pid {holder.pid}" in str(err.value) and "Nothing was changed" in str(err.value)
    finally:
        holder.kill()  # SIGKILL: the lock it held is stale now
        holder.wait()
    with RunLock(tmp_path, purpose="evaluate") as lock:  # taken over without manual steps
        assert not lock.inherited
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["purpose"] == "evaluate"


def test_the_holders_flows_and_children_inherit_the_lock(tmp_path, monkeypatch):
    monkeypatch.delenv(INHERIT_ENV, raising=False)
    with RunLock(tmp_path, purpose="run"):
        token = os.environ[INHERIT_ENV]
        with RunLock(tmp_path, purpose="generate") as nested:  # a flow of the same command
            assert nested.inherited
        child = subprocess.run(  # a child process of the command (e.g. a scheduled flow run)
            [sys.executable, "-c", f"from pipeline.run_lock import RunLock; print(RunLock({str(tmp_path)!r}).acquire().inherited)"],
            cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert child.stdout.strip() == "True", child.stderr
        stranger = subprocess.run(  # the same, without the holder's token: refused
            [sys.executable, "-c", f"from pipeline.run_lock import RunLock; RunLock({str(tmp_path)!r}).acquire()"],
            cwd=REPO, capture_output=True, text=True,
            env={**{k: v for k, v in os.environ.items() if k != INHERIT_ENV}, "PYTHONPATH": str(REPO)})
        assert stranger.returncode != 0 and "in use by another run" in stranger.stderr
        assert os.environ[INHERIT_ENV] == token  # the nested release kept the holder's token
    assert INHERIT_ENV not in os.environ


# ---------------------------------------------------------------- process lifetime


def test_a_tied_child_dies_when_its_parent_is_sigkilled():
    """parent -> tied `sleep` (and an untied one, the control): SIGKILL of the parent alone."""
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        from rendering.processes import tied_command
        tied = subprocess.Popen(tied_command(["sleep", "60"]))
        free = subprocess.Popen(["sleep", "60"])
        print(tied.pid, free.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    tied, free = map(int, parent.stdout.readline().split())
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{tied}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":  # exec'd
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert set(descendants(parent.pid)) == {tied, free} and parent_of(tied) == parent.pid
        parent.kill()
        parent.wait()
        assert _wait_gone([tied], timeout=5) == []
        assert _alive(free)  # without the parent-death signal a child outlives its parent
    finally:
        os.kill(free, signal.SIGKILL)


def test_tied_command_execs_the_program_itself():
    out = subprocess.run(tied_command([sys.executable, "-c", "import os; print(os.getpid())"]), cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and out.stdout.strip().isdigit()
    bad = subprocess.run([sys.executable, "-m", "rendering.processes", "sleep"], cwd=REPO, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "usage:" in bad.stderr


# ---------------------------------------------------------------- torn logs and debris


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    records, torn = read_records(path)
    assert [r["step"] for r in records] == [1, 2] and torn
    assert "partial last line 3" in caplog.text
    path.write_text('{"step": 1}\n{"step": 2}\n')
    assert read_records(path) == ([{"step": 1}, {"step": 2}], False)
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')  # damage in the middle is no torn append
    with pytest.raises(JsonlError, match=r"metrics.jsonl, line 2: not a JSON object"):
        read_records(path)


def test_temporary_files_are_found_and_removed_but_nothing_else(tmp_path):
    keep = [tmp_path / "model.pt", tmp_path / "checkpoints" / "step-00000004.pt", tmp_path / ".crocopipe.lock",
            tmp_path / "notes.tmp"]
    debris = [tmp_path / ".model.pt.tmp-123", tmp_path / "checkpoints" / ".step-00000008.pt.tmp-9",
              tmp_path / "shards" / "train" / ".pairs-000001.tar.77.tmp", tmp_path / "figures" / ".recon-1.png.tmp.png"]
    for path in keep + debris:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "pairs" / ".key-1.5.tmp").mkdir(parents=True)  # render-pairs' temporary folder
    (tmp_path / "pairs" / ".key-1.5.tmp" / "img1.jpg").write_bytes(b"x")
    found = temporary_files(tmp_path)
    assert set(found) == set(debris) | {tmp_path / "pairs" / ".key-1.5.tmp"}
    assert set(remove_temporary_files(tmp_path)) == set(found)
    assert temporary_files(tmp_path) == [] and all(p.exists() for p in keep)

"""Commands killed for real: no process of the run survives (checked by process group and by
parent chain, never by name), the resume ends exactly where an uninterrupted run ends, a second
writer of the run folder exits 3, and the killed run's Prefect history is corrected."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rendering.processes import descendants
from rendering.atomic import temporary_files
from test_crash_safety import _alive, _wait_gone

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# tests/conftest.py TINY_RUN with these changes: one scene, no evaluation, 24 steps checkpointed every 4
PRETRAIN = {
    "corpus": {"val_fraction": None, "workers": None, "sampler": None, "scenes": {"procedural": {"count": 1}}},
    "pretrain": {"batch_size": 4, "epochs": 6, "steps_per_epoch": 4, "warmup_epochs": 1, "stop_fraction": 1.0,
                 "checkpoint_every": 4, "keep_checkpoints": 8, "log_every": 1, "figure_every": 1000,
                 "num_workers": 1, "base_lr": 0.03, "shuffle_buffer": 8, "tensorboard": False},
    "evaluate": None,
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CROCOPIPE_"))}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return env


def _command(*args: str, cwd: Path) -> subprocess.Popen:
    """`crocopipe ARGS` as its own process group and session, as a shell would start it."""
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _session_and_group(pid: int) -> tuple[int, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[3]), int(fields[2])  # (session, process group)


def _members_of_group(pgid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and (_session_and_group(int(p)) or (0, 0))[1] == pgid
            and _alive(int(p))]


def _steps_of_checkpoints(folder: Path) -> list[int]:
    return sorted(int(p.name[5:13]) for p in folder.glob("step-*.pt")) if folder.is_dir() else []


def _kill_during_training(cli: subprocess.Popen, ckpts: Path, after_step: int, whole_group: bool) -> list[int]:
    """Wait for a checkpoint past ``after_step``, then SIGKILL; returns the run's processes then."""
    deadline = time.monotonic() + 240
    while not [s for s in _steps_of_checkpoints(ckpts) if s > after_step]:
        assert cli.poll() is None, cli.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.01)
    tree = descendants(cli.pid)
    trainers = [p for p in tree if b"training.train" in Path(f"/proc/{p}/cmdline").read_bytes()
                and b"torch.distributed.run" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert trainers, "the trainer is not among the command's descendants"
    # the trainer sits in a session of its own, out of reach of the group kill below
    assert all(_session_and_group(p)[0] != cli.pid for p in trainers)
    if whole_group:
        os.killpg(cli.pid, signal.SIGKILL)
    else:
        os.kill(cli.pid, signal.SIGKILL)
    cli.wait(timeout=30)
    cli.stdout.close()
    return tree


@pytest.mark.slow
def test_killed_pretrain_leaves_no_process_and_resumes_to_the_uninterrupted_result(tmp_path, run_toml):
    from training.config import PretrainConfig
    from training.synthetic import write_synthetic_corpus
    from training.train import train
    import tomllib

    (tmp_path / "run.toml").write_text(run_toml(**PRETRAIN))
    write_synthetic_corpus(tmp_path / "run" / "corpus", shards=2, pairs_per_shard=8, size=40)
    out = tmp_path / "run" / "pretrain" / "croco_v1"
    ckpts = out / "checkpoints"

    # 1. SIGKILL of the command's process group
    cli = _command("pretrain", "run.toml", cwd=tmp_path)
    tree = _kill_during_training(cli, ckpts, 0, whole_group=True)
    assert _wait_gone(tree) == [] and _members_of_group(cli.pid) == []
    first = max(_steps_of_checkpoints(ckpts))
    (ckpts / f".step-{first + 4:08d}.pt.99999.tmp").write_bytes(b"partial")  # as a kill mid-write leaves
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "lo')  # and a torn last line

    # 2. SIGKILL of the command process alone
    cli = _command("pretrain", "run.toml", cwd=tmp_path)
    tree = _kill_during_training(cli, ckpts, first, whole_group=False)
    assert _wait_gone(tree) == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in tree if _alive(p)]

    # 3. the resume runs to the end; meanwhile a second pretrain and an evaluate are refused
    cli = _command("pretrain", "run.toml", cwd=tmp_path)
    lock = tmp_path / "run" / ".crocopipe.lock"
    deadline = time.monotonic() + 60
    while not (lock.is_file() and lock.read_text() and json.loads(lock.read_text())["pid"] == cli.pid):
        assert time.monotonic() < deadline and cli.poll() is None
        time.sleep(0.05)
    for second in (["pretrain", "run.toml"], ["evaluate", "run.toml"]):
        refused = subprocess.run([sys.executable, "-m", "pipeline.cli", *second], cwd=tmp_path, env=_env(),
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"in use by another run (crocopipe pretrain pid {cli.pid} on" in refused.stderr
    output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0, output
    assert temporary_files(out) == []

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 25))  # each step once, in order

    cfg = PretrainConfig.model_validate(tomllib.loads(run_toml(**PRETRAIN))["pretrain"])
    train(cfg, "croco_v1", tmp_path / "run" / "corpus", tmp_path / "reference")
    reference = [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in reference], rel=1e-5)
    got = torch.load(out / "model.pt", weights_only=True)["model"]
    want = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)["model"]
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)

    # the two killed flow runs are no longer "Running" in the run's Prefect history
    with sqlite3.connect(tmp_path / "run" / "prefect" / "prefect.db") as con:
        states = con.execute("SELECT name, state_type FROM flow_run ORDER BY created").fetchall()
    assert [s for _, s in states] == ["CRASHED", "CRASHED", "COMPLETED"], states


def _wait_for_units(cli: subprocess.Popen, units: Path, more_than: int) -> None:
    deadline = time.monotonic() + 240
    while len(list(units.glob("*.parquet"))) <= more_than:
        assert cli.poll() is None, cli.stdout.read()
        assert time.monotonic() < deadline, "no unit finished in time"
        time.sleep(0.01)


@pytest.mark.slow
def test_killed_or_interrupted_generate_leaves_no_process_and_no_partial_file(tmp_path):
    from pipeline.corpus import verify_corpus
    from test_corpus import write_config

    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("pairs_per_scene = 4", "pairs_per_scene = 12"))  # 12 units
    units = tmp_path / "run" / "corpus" / "units"

    # SIGKILL of the command alone: its render workers, resource tracker and Prefect server go too
    cli = _command("generate", str(config), cwd=tmp_path)
    _wait_for_units(cli, units, 0)
    tree = descendants(cli.pid)
    assert len(tree) >= 4, tree  # server, 2 workers, resource tracker (and their own children)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait(timeout=30)
    cli.stdout.close()
    assert _wait_gone(tree) == []

    # Ctrl-C (SIGINT to the foreground group) and SIGTERM (the command alone): stop within seconds,
    # finished units kept, no partial file, no process left
    for sig, whole_group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        before = len(list(units.glob("*.parquet")))
        cli = _command("generate", str(config), cwd=tmp_path)
        _wait_for_units(cli, units, before)
        tree = descendants(cli.pid)
        started = time.monotonic()
        (os.killpg if whole_group else os.kill)(cli.pid, sig)
        output, _ = cli.communicate(timeout=60)
        assert time.monotonic() - started < 10, output
        assert cli.returncode == 128 + sig and "finished work is kept" in output, output
        assert _wait_gone(tree, timeout=5) == []
        assert temporary_files(tmp_path / "run" / "corpus") == []
        assert len(list(units.glob("*.parquet"))) > before

    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", str(config)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert verify_corpus(tmp_path / "run" / "corpus").ok
    with sqlite3.connect(tmp_path / "run" / "prefect" / "prefect.db") as con:
        states = [s for (s,) in con.execute("SELECT state_type FROM flow_run ORDER BY created")]
        running_tasks = con.execute("SELECT count(*) FROM task_run WHERE state_type = 'RUNNING'").fetchone()[0]
    assert states[-1] == "COMPLETED" and "RUNNING" not in states and running_tasks == 0, states


@pytest.mark.slow
def test_two_evaluates_on_one_run_folder_one_runs_the_other_exits_3(tmp_path, trained_run):
    from conftest import copy_run

    copy_run(trained_run, tmp_path)  # the session's run: corpus and croco_v1 done by the plain functions

    first = _command("evaluate", "run.toml", cwd=tmp_path)
    lock = tmp_path / "run" / ".crocopipe.lock"
    deadline = time.monotonic() + 60
    while not (lock.is_file() and lock.read_text() and json.loads(lock.read_text())["pid"] == first.pid):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "pipeline.cli", "evaluate", "run.toml"], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=120)
    output, _ = first.communicate(timeout=600)
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"in use by another run (crocopipe evaluate pid {first.pid} on" in second.stderr
    assert first.returncode == 0, output
    results = sorted(p.relative_to(tmp_path / "run" / "eval").as_posix() for p in (tmp_path / "run" / "eval").rglob("*.json"))
    assert {"croco_v1/pose/seed-0.json", "none/pose/seed-0.json"} <= set(results), results
    assert (tmp_path / "run" / "tables" / "results.md").is_file()

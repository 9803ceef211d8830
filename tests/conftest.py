"""Shared test fixtures."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


@contextlib.contextmanager
def restored_environment():
    """Commands run in-process (CliRunner) point Prefect at their run folder through os.environ
    (PREFECT_HOME, the logging config); this puts os.environ back as it was, so that no test or
    fixture hands those to a later test's subprocesses."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _restore_environment():
    with restored_environment():
        yield


@pytest.fixture
def one_torch_thread(monkeypatch):
    """Tiny models on shared cores run fastest single-threaded (no OpenMP spin-wait under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def rendered_capture_sequence():
    """Six posed RGB-D frames of one scene from the embedded renderer (capture readers and mining
    tests write it in each capture layout); rendered once per test session."""
    from rendering.backends.embedded import EmbeddedRenderer
    from tests.capture_layouts import render_sequence

    with EmbeddedRenderer() as renderer:
        return render_sequence(renderer, n=6)


# The tiny run the end-to-end tests start from: 2 procedural scenes x 2 pairs at 48 px, one
# croco_v1 epoch of 2 steps on the test preset, one pose job per method.
TINY_RUN: dict = {
    "run_dir": "run",
    "corpus": {
        "pairs_per_scene": 2, "pairs_per_shard": 2, "val_fraction": 0.5, "workers": 1,
        "scenes": {"procedural": {"count": 2}},
        "sampler": {"width": 48, "height": 48},
    },
    "pretrain": {
        "methods": ["croco_v1"], "preset": "test", "batch_size": 2, "epochs": 1, "steps_per_epoch": 2,
        "warmup_epochs": 0, "num_workers": 0, "shuffle_buffer": 0, "checkpoint_every": 1,
    },
    "evaluate": {"methods": ["croco_v1", "none"], "tasks": ["pose"], "steps": 1, "batch_size": 2, "seeds": [0],
                 "threads": 1},
}


def _merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, table by table; a value of None removes the key."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"tiny_run_toml: no TOML form for {value!r}")


def _toml_table(table: dict, name: str = "") -> list[str]:
    lines = [f"[{name}]"] if name else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += _toml_table(value, f"{name}.{key}" if name else key)
    return lines


def tiny_run_toml(**overrides) -> str:
    """The text of :data:`TINY_RUN` with ``overrides`` (one keyword per top-level key or section,
    e.g. ``corpus={"pairs_per_scene": 3}``, merged table by table; None removes a key or section)."""
    return "\n".join(_toml_table(_merged(TINY_RUN, overrides))) + "\n"


@pytest.fixture(scope="session")
def run_toml():
    """:func:`tiny_run_toml`, for tests that write a run config."""
    return tiny_run_toml


# The trained run's changes to TINY_RUN: one training step; zero-shot tasks beside pose.
TRAINED_RUN = {"pretrain": {"steps_per_epoch": 1}, "evaluate": {"tasks": ["pose", "correspondence", "cross_view_gain"]}}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A folder holding run.toml (:data:`TRAINED_RUN`) and its run folder with the corpus generated
    and croco_v1 pretrained by the plain functions the flows wrap (no Prefect), made once per
    session: tests copy it (:func:`copy_run`) before they change anything."""
    from pipeline.config import load_run_config
    from pipeline.corpus.build import merge_corpus, prepare_corpus_dir
    from pipeline.corpus.plan import plan_units
    from pipeline.corpus.unit import run_unit
    from training.train import train

    folder = tmp_path_factory.mktemp("trained-run")
    config = folder / "run.toml"
    config.write_text(tiny_run_toml(**TRAINED_RUN))
    run = load_run_config(config)
    units = plan_units(run.corpus)
    prepare_corpus_dir(run.corpus_dir, run.corpus, units)
    for unit in units:
        run_unit(unit.as_dict(), str(run.corpus_dir), run.corpus.model_dump_json())
    merge_corpus(run.corpus_dir, run.corpus, units)
    train(run.pretrain, "croco_v1", run.corpus_dir, run.layout.pretrain("croco_v1").root)
    return folder


def copy_run(source, target):
    """Copy a folder made like :func:`trained_run`'s into ``target``; returns its run.toml."""
    import shutil

    shutil.copytree(source, target, dirs_exist_ok=True)
    return target / "run.toml"


def prefect_client_env(api_url: str | None = None) -> dict[str, str]:
    """This environment without PREFECT_* settings (plus ``api_url`` as PREFECT_API_URL, when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONUNBUFFERED="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One Prefect server (SQLite in tmp) for the session, as a user would run it, for the tests
    whose commands report to a configured server: yields (api url, database path). Tests that
    check what a command does with its own embedded server do not use it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tmp_path_factory.mktemp("prefect-server")
    env = prefect_client_env()
    # the task-run recorder's flush interval of the commands' embedded server (pipeline.flows.history)
    env.update(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false", PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL="1")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "prefect server did not start"
        time.sleep(0.2)
    try:
        yield url, home / "prefect.db"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

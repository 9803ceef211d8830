"""Shared test fixtures."""

import json

import pytest


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

"""Shared test fixtures."""

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

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

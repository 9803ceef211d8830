"""The loader workers' memory setting (rendering.allocator): applied by make_loader's worker init,
and it takes effect (freed memory is reused instead of faulted back in from the kernel)."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from rendering.allocator import TRIM_THRESHOLD, is_glibc
from training.pair_loader import AugmentConfig, make_loader

pytestmark = pytest.mark.skipif(not is_glibc(), reason="the setting is glibc's mallopt (a no-op elsewhere)")

ARRAY_BYTES = 1 << 20  # below the setting's mmap threshold
# More than glibc's own adjustment ever lets the heap keep when it is freed (2 x its 32 MiB cap on
# the mmap threshold), less than the setting's trim threshold: with glibc's defaults, whatever
# state the process is in, freeing this much gives most of it back to the kernel.
PATTERN_BYTES = 96 << 20
ROUNDS = 3


def refault_share() -> float:
    """Minor faults while allocating, filling and freeing PATTERN_BYTES of 1 MiB arrays ROUNDS
    times (after one warm-up round), as a share of the pages written."""
    count = PATTERN_BYTES // ARRAY_BYTES

    def one_round() -> None:
        arrays = [np.ones(ARRAY_BYTES, np.uint8) for _ in range(count)]
        del arrays

    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(ROUNDS):
        one_round()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return faults / (ROUNDS * PATTERN_BYTES / resource.getpagesize())


class FaultProbe(torch.utils.data.IterableDataset):
    """Yields, from inside a DataLoader worker, that worker's refault_share()."""

    def __iter__(self):
        yield torch.tensor(refault_share())


def worker_share(worker_init_fn) -> float:
    loader = torch.utils.data.DataLoader(FaultProbe(), batch_size=None, num_workers=1, worker_init_fn=worker_init_fn)
    return float(next(iter(loader)))


def test_pattern_exceeds_what_glibc_keeps_and_fits_the_setting() -> None:
    assert 2 * (32 << 20) < PATTERN_BYTES < TRIM_THRESHOLD


def test_loader_workers_keep_freed_memory() -> None:
    init = make_loader(["unused.tar"], AugmentConfig(32), 4, seed=0, num_workers=1).worker_init_fn
    assert worker_share(init) < 0.05
    # The same probe in a worker without the setting: the memory goes back to the kernel and
    # faults in again, so the probe can tell the two apart.
    assert worker_share(None) > 0.5

"""Spawn process pools that belong to the flow that made them.

Each worker dies with the flow's process (rendering.processes.die_with_parent) and ignores
SIGINT: a terminal's Ctrl-C reaches the whole process group, and stopping is the flow's job. When
the block is left by an exception (an interrupt included) the workers are killed at once instead
of being waited for, so Ctrl-C returns within seconds; finished work is already on disk.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from rendering.processes import die_with_parent


def _start_worker(parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def tied_executor(workers: int, initializer: Callable[..., None] | None = None,
                  initargs: tuple = ()) -> ProcessPoolExecutor:
    """A spawn pool whose workers die with this process (``initializer`` runs in each after that)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))


@contextmanager
def tied_process_pool(workers: int, initializer: Callable[..., None] | None = None,
                      initargs: tuple = ()) -> Iterator[ProcessPoolExecutor]:
    """:func:`tied_executor` for the block: shut down when it ends, killed when it raises."""
    executor = tied_executor(workers, initializer, initargs)
    try:
        yield executor
    except BaseException:
        kill_pool(executor)
        raise
    executor.shutdown(wait=True, cancel_futures=True)


def kill_pool(executor: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (running tasks are lost; their futures fail) and reap them."""
    workers = list((getattr(executor, "_processes", None) or {}).values())  # no public handle on them
    executor.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join(timeout=10)

"""The command owns its process tree: signals become an orderly stop, and no child outlives it.

SIGTERM and SIGHUP are turned into the same KeyboardInterrupt as Ctrl-C, so every stage stops the
same way: finally-blocks run (render workers terminated, partial files removed, the embedded
Prefect server stopped, the run lock released), and whatever child is still alive afterwards is
killed, found by parent chain (rendering.processes.kill_descendants). Abrupt deaths (SIGKILL) are
covered by the parent-death signal each child sets for itself (see rendering/processes.py).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CommandInterrupted(KeyboardInterrupt):
    """The command was asked to stop by a signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Supervision:
    """What happened to the supervised command (the signal that stopped it, if any)."""

    signum: int | None = None


def _resource_tracker() -> frozenset[int]:
    """multiprocessing's resource tracker: it exits by itself once every process sharing its pipe
    is gone, and killing it early only makes the interpreter's exit start a new one."""
    import sys

    tracker = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(tracker, "_resource_tracker", None), "_pid", None)
    return frozenset([pid]) if pid else frozenset()


@contextmanager
def supervised_command() -> Iterator[Supervision]:
    """Run a command body under the stop signals' handlers; kill its leftover children at the end."""
    from rendering.processes import kill_descendants

    state = Supervision()

    def on_signal(signum: int, _frame: object) -> None:
        if state.signum is None:  # the first signal stops the command; repeats do not interrupt cleanup
            state.signum = signum
            raise CommandInterrupted(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield state
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            kill_descendants(spare=_resource_tracker())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

"""Tie the life of every child process to the command that started it.

Each child asks the kernel for a *parent-death signal* (Linux ``prctl(PR_SET_PDEATHSIG)``) as the
first thing it does: when its parent exits, however it exits (SIGKILL included, when no Python
code of the parent runs any more), the kernel sends SIGKILL to the child, which in turn triggers
its own children's signal. This is set link by link: the CLI's render workers, the embedded
Prefect server, torchrun, torchrun's trainers (which torchrun starts in a new session, out of
reach of a process-group kill) and the trainers' DataLoader workers. A process group kill or a
supervisor alone cannot do this: torchrun's new session leaves the group, and a supervisor that
is killed itself leaves everything behind. On the graceful paths (Ctrl-C, SIGTERM, SIGHUP) the
command also stops its children itself (see :func:`kill_descendants`), found by parent chain.

Programs we do not write (torchrun, the Prefect server) get the signal through this module's
command-line form, which sets it and then ``exec``s the program (the setting survives exec):

    python -m rendering.processes --parent PID -- python -m torch.distributed.run ...

It lives in rendering/, the bottom layer, because render workers, trainers and the pipeline all
use it; it imports only the standard library.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits; False off Linux.

    ``expected_parent`` closes the race where the parent died before this call: the process has
    then already been re-parented, and it signals itself at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)
    return True


def tied_command(command: list[str]) -> list[str]:
    """``command`` prefixed so that it dies with the calling process (see the module doc)."""
    return [sys.executable, "-m", "rendering.processes", "--parent", str(os.getpid()), "--", *command]


def parent_of(pid: int) -> int | None:
    """The parent pid from /proc/<pid>/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def descendants(pid: int) -> list[int]:
    """Every live process whose parent chain leads to ``pid`` (children first, then theirs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = parent_of(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    found, frontier = [], [pid]
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, [])]
        found += nxt
        frontier = nxt
    return found


def kill_descendants(grace_s: float = 3.0, spare: frozenset[int] = frozenset()) -> list[int]:
    """SIGTERM every descendant of this process but ``spare``, SIGKILL those alive after ``grace_s``.

    The whole tree is listed before any signal, so a grandchild whose parent dies first (and is
    re-parented away from the chain) is still reached. Returns the pids signalled.
    """
    victims = [pid for pid in descendants(os.getpid()) if pid not in spare]
    for pid in victims:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in victims):
        time.sleep(0.05)
    for pid in victims:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    return victims


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (zombies of ours are reaped by their owner)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:].split()[0] != b"Z"


def _main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[0] != "--parent" or argv[2] != "--":
        raise SystemExit("usage: python -m rendering.processes --parent PID -- COMMAND ...")
    die_with_parent(int(argv[1]))
    os.execvp(argv[3], argv[3:])


if __name__ == "__main__":
    _main(sys.argv[1:])

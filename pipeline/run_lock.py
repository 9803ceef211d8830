"""One writer per run folder: the run lock every command that writes a run folder holds.

``fcntl.flock`` on ``<run_dir>/.crocopipe.lock``: the kernel releases it when the holder exits,
even on SIGKILL, so a killed command never leaves a stale lock and the next command simply takes
it. The file records the holder (pid, host, start time, command) for the refusal message, and a
random token. The command that takes the lock exports the token in ``CROCOPIPE_RUN_LOCK``; code
it runs later (its flows, in the same process or in child processes) that asks for the same lock
finds the token of the live holder and proceeds as part of that command instead of being refused.
flock is per host: on storage shared by several machines, let one command own a run folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path

LOCK_FILE = ".crocopipe.lock"
INHERIT_ENV = "CROCOPIPE_RUN_LOCK"


class RunLockedError(RuntimeError):
    """Another command is already writing this run folder."""


class RunLock:
    """Exclusive use of a run folder; re-entrant for the holder's own flows and children."""

    def __init__(self, run_dir: Path, purpose: str = "run"):
        self.path = Path(run_dir) / LOCK_FILE
        self.purpose = purpose
        self.inherited = False
        self._fd: int | None = None
        self._previous_env: str | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            os.close(fd)
            token = os.environ.get(INHERIT_ENV)
            if token and record.get("token") == token:
                self.inherited = True  # our own command holds it
                return self
            raise RunLockedError(
                f"{self.path.parent} is in use by another run ({_describe(record)}); "
                "wait for it to finish or use another run_dir. Nothing was changed."
            ) from None
        token = uuid.uuid4().hex
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "purpose": self.purpose, "token": token}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        self._previous_env = os.environ.get(INHERIT_ENV)
        os.environ[INHERIT_ENV] = token
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        if self._previous_env is None:
            os.environ.pop(INHERIT_ENV, None)
        else:
            os.environ[INHERIT_ENV] = self._previous_env
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_record(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(record: dict) -> str:
    if not {"pid", "host", "since"} <= set(record):
        return "holder unknown"
    return f"crocopipe {record.get('purpose', 'run')} pid {record['pid']} on {record['host']} since {record['since']}"

"""A run-folder lock so that two generations never write the same output at once.

``fcntl.flock`` on a lock file: the kernel releases it when the holder exits, even on SIGKILL, so
a crashed run never leaves a stale lock. The file records the holder's pid, host and start time
for the refusal message. (flock is per host; on shared storage across machines use one
coordinator, e.g. one Prefect flow run per run folder.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".crocopipe.lock"


class RunLockedError(RuntimeError):
    """Another process is already working in this run folder."""


class RunLock:
    def __init__(self, run_dir: Path, purpose: str = "generate"):
        self.path = Path(run_dir) / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by another run ({holder}); "
                "wait for it to finish or use another run_dir. Nothing was changed."
            ) from None
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "purpose": self.purpose}
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{record.get('purpose', 'run')} pid {record['pid']} on {record['host']} since {record['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"

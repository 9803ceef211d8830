"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Everything is written to a hidden temporary sibling (``.<name>.<pid>.tmp[suffix]``, which no
output glob matches and which the next run of a stage may delete), flushed to disk, then renamed
over the target.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(final: Path, suffix: str = "") -> Path:
    """Hidden sibling of ``final``; ``suffix`` keeps an extension writers infer the format from."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp{suffix}")


def is_temporary_name(name: str) -> bool:
    """A name of this project's atomic-write temporaries: hidden, with ``.tmp`` in it
    (``.pairs-000003.tar.<pid>.tmp``, ``.step-00000030.pt.<pid>.tmp``, ``.recon-00000010.png.<pid>.tmp.png``)."""
    return name.startswith(".") and ".tmp" in name


def temporary_files(folder: Path) -> list[Path]:
    """Atomic-write temporaries anywhere under ``folder`` (a killed writer leaves them behind)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(".*") if is_temporary_name(p.name))


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete the temporaries under ``folder``; returns what was removed.

    Only for a caller that holds the folder's run lock: then no live writer owns them.
    """
    removed = []
    for path in temporary_files(folder):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

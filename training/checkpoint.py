"""Atomic, self-describing training checkpoints and resume-point discovery.

A checkpoint is written to a temporary file, flushed, fsynced and renamed over its final name,
so a crash leaves either the old set of checkpoints or the new one, never a half-written file
under a final name. A file that is truncated anyway (disk full, copied partially) is skipped with
a warning when looking for the resume point.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from rendering.atomic import atomic_path

from training.models.loading import read_checkpoint

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}.pt"


def save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of checkpoint files, newest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


def latest_valid(folder: Path) -> tuple[Path, dict] | None:
    """Newest checkpoint that loads; unreadable ones are skipped with a warning."""
    for _, path in list_checkpoints(folder):
        try:
            return path, read_checkpoint(path)
        except ValueError as exc:
            log.warning("skipping unreadable checkpoint: %s", exc)
    return None


def prune(folder: Path, keep: int) -> None:
    """Keep the `keep` newest checkpoints (the resume point and its predecessors)."""
    for _, path in list_checkpoints(folder)[keep:]:
        path.unlink(missing_ok=True)

"""Posed RGB-D captures (ScanNet, ARKitScenes, TUM RGB-D, generic frames files) as frame records.

:func:`read_sequence` reads one sequence folder of a given kind; :func:`discover_sequences` finds
the sequence folders under a dataset root (the root itself when it is one). Nothing here
downloads anything: users bring their own copies of the data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rendering.captures.arkitscenes import is_arkitscenes_sequence, read_arkitscenes
from rendering.captures.generic import is_generic_sequence, read_generic
from rendering.captures.record import CaptureError, CaptureFrame, CaptureSequence, load_depth, load_rgb
from rendering.captures.scannet import is_scannet_sequence, read_scannet
from rendering.captures.tum import is_tum_sequence, read_tum

CAPTURE_KINDS = ("scannet", "arkitscenes", "tum", "frames")
_READERS: dict[str, tuple[Callable[[Path], bool], Callable[..., CaptureSequence]]] = {
    "scannet": (is_scannet_sequence, read_scannet),
    "arkitscenes": (is_arkitscenes_sequence, read_arkitscenes),
    "tum": (is_tum_sequence, read_tum),
    "frames": (is_generic_sequence, read_generic),
}

__all__ = ["CAPTURE_KINDS", "CaptureError", "CaptureFrame", "CaptureSequence", "discover_sequences",
           "load_depth", "load_rgb", "read_sequence"]


def _reader(kind: str):
    if kind not in _READERS:
        raise CaptureError(f"unknown capture kind {kind!r}; allowed: {', '.join(CAPTURE_KINDS)}")
    return _READERS[kind]


def read_sequence(kind: str, root: Path, **options: Any) -> CaptureSequence:
    """One sequence of ``kind`` (options go to the reader, e.g. TUM's ``camera``)."""
    return _reader(kind)[1](Path(root), **options)


def discover_sequences(kind: str, root: Path) -> list[Path]:
    """Sequence folders of ``kind``: ``root`` itself, or its sub-folders (to depth 3), sorted."""
    is_sequence = _reader(kind)[0]
    root = Path(root)
    if not root.is_dir():
        raise CaptureError(f"{kind} root {root} is not a folder")
    if is_sequence(root):
        return [root]
    found: list[Path] = []
    level = [root]
    for _ in range(3):
        level = sorted(p for folder in level for p in folder.iterdir() if p.is_dir())
        found += [p for p in level if is_sequence(p)]
        level = [p for p in level if not is_sequence(p)]
    if not found:
        raise CaptureError(f"no {kind} sequence under {root}")
    return sorted(found)

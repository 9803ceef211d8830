"""Scene URIs and the ids and keys made from them: the one place their rules live.

A scene URI is a mesh file path (optionally ``file://``) or ``procedural:<seed>[?key=value&...]``.
A scene id names a scene in a corpus (plans, manifests, unit ids); a sample-key slug is the id made
safe for WebDataset keys, which may not contain dots.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

PROCEDURAL_PREFIX = "procedural:"
FILE_PREFIX = "file://"
_ID_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def is_procedural(uri: str) -> bool:
    return uri.startswith(PROCEDURAL_PREFIX)


def procedural_uri(seed: int, query: str = "") -> str:
    """``procedural:<seed>`` with an optional ``key=value&...`` query."""
    return f"{PROCEDURAL_PREFIX}{seed}{'?' + query if query else ''}"


def split_procedural(uri: str) -> tuple[str, str]:
    """(seed text, query text) of a procedural URI, unvalidated (rendering.scenes.procedural checks)."""
    if not is_procedural(uri):
        raise ValueError(f"{uri}: not a procedural scene URI (expected '{PROCEDURAL_PREFIX}<seed>')")
    seed, _, query = uri[len(PROCEDURAL_PREFIX):].partition("?")
    return seed, query


def mesh_path(uri: str) -> Path:
    """The file a mesh-file URI names (``file://`` stripped)."""
    return Path(uri[len(FILE_PREFIX):] if uri.startswith(FILE_PREFIX) else uri)


def id_slug(text: str, keep_case: bool = False) -> str:
    """An id fragment: runs of characters outside ``[A-Za-z0-9_-]`` (dots included) become ``-``,
    lower-cased unless ``keep_case`` (dataset scene names keep their published case)."""
    out = _ID_BAD.sub("-", text if keep_case else text.lower()).strip("-")
    if not out:
        raise ValueError(f"cannot make a scene id from {text!r}: name the scene explicitly")
    return out


def scene_id_for_uri(uri: str) -> str:
    """``procedural:12?rooms=2`` -> ``proc-000012-rooms-2``; ``/data/Apt 3.glb`` -> ``apt-3``."""
    if is_procedural(uri):
        seed, query = split_procedural(uri)
        base = f"proc-{int(seed):06d}" if seed.isdigit() else f"proc-{seed}"
        return id_slug(f"{base}-{query}" if query else base)
    return id_slug(Path(uri).stem)


def key_slug(scene_id: str) -> str:
    """``scene_id`` made safe for sample keys (letters, digits, ``_``, ``-``; no dots).

    Ids that are already safe are kept as they are; any other id is sanitised and suffixed with 8
    hex digits of its hash, so that two different ids can never share a slug.
    """
    if not isinstance(scene_id, str) or not scene_id:
        raise ValueError(f"scene_id must be a non-empty string, got {scene_id!r}")
    clean = _KEY_UNSAFE.sub("_", scene_id)
    if clean == scene_id:
        return scene_id
    digest = hashlib.blake2b(scene_id.encode("utf-8"), digest_size=4).hexdigest()
    return f"{clean}_{digest}"

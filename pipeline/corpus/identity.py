"""What a work unit *is*: identity by content, so editing the scene list re-uses everything else.

A unit's key hashes what its shard contains: the scene's content (file bytes and options, see
pipeline.corpus.scene_check.scene_digest), the settings that shape every unit (seed, chunking,
encoding, backend, sampler), its pair range and split, and the version of the generation path
(:data:`GENERATION_VERSION`). A finished unit whose stored key matches is re-used whatever else
changed in the config (scenes added or removed, another val split, more workers) or in the code.

The corpus-level refusal (another config's corpus in the folder) applies only when the
unit-shaping settings or the generation version change, because those would change every unit.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from pipeline.config import json_sha256
from rendering.scene_uri import is_procedural, mesh_path

# Corpus settings that change what existing units contain (all others may change on a run folder).
UNIT_SHAPING_FIELDS = ("seed", "pairs_per_shard", "image_format", "jpeg_quality", "depth_scale", "backend",
                       "backend_options", "sampler")
# The version of the generation path. Bump it whenever the bytes a unit produces for the same scene
# and settings change (images, depths, meta.json, the shard's layout): it is part of every unit's
# identity, so run folders of the previous version are refused instead of mixing two kinds of
# units. Code changes that keep those bytes (refactors, speed-ups, docs) leave it alone.
# tests/test_generation_version.py renders a fixed tiny unit and fails when its content changes.
GENERATION_VERSION = 1

# The modules whose code decides a unit's bytes (a hash of their source keys caches such as the
# scene check's; it is never part of a unit's identity).
GENERATION_MODULES = ("atomic", "backend", "backends", "camera", "covisibility", "navigable", "pair", "render_loop",
                      "sampling", "scene_uri", "shards", "scenes")


@lru_cache(maxsize=1)
def rendering_source_hash() -> str:
    """A hash of the generation modules' source (rendering/): a cache key that changes with any
    edit there, for results that are cheap to recompute."""
    root = Path(__file__).resolve().parents[2] / "rendering"
    h = hashlib.sha256()
    for name in GENERATION_MODULES:
        target = root / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [p for p in [target.with_suffix(".py")] if p.is_file()]
        for path in files:
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def unit_settings(corpus) -> dict:
    """The unit-shaping settings of a corpus config (JSON-ready), with the generation version."""
    content = corpus.model_dump(mode="json")
    return {**{k: content[k] for k in UNIT_SHAPING_FIELDS}, "generation_version": GENERATION_VERSION}


def units_hash(corpus) -> str:
    """Hash of :func:`unit_settings`: equal for two configs whose common scenes give equal units."""
    return json_sha256(unit_settings(corpus))


def scene_digest(spec) -> str:
    """Content identity of a scene (a rendering.backend.SceneSpec): its id, URI and options and,
    for a file, the sha256 of its bytes (a changed file is another scene)."""
    from dataclasses import asdict

    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode())
    if not is_procedural(spec.uri):
        path = mesh_path(spec.uri)
        try:
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as err:
            h.update(f"unreadable:{err}".encode())
    return h.hexdigest()


def unit_key(settings_hash: str, scene_digest: str, split: str, first_pair: int, n_pairs: int) -> str:
    return hashlib.sha256(f"{settings_hash}|{scene_digest}|{split}|{first_pair}|{n_pairs}".encode()).hexdigest()[:32]

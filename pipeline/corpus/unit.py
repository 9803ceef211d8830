"""Run one work unit: render its pairs, write its shard, then its unit manifest.

The unit body is idempotent. A unit is *complete* when its unit manifest exists, was made from
the same corpus config and names a shard whose sha256 matches the file on disk; a complete unit
is returned as it is. The shard is renamed into place before the unit manifest, so a crash at any
moment leaves either a complete unit or one that is simply redone (producing the same bytes).

Functions here take and return small, picklable values so that they run in a spawn process pool
or on a Dask worker; each process creates its renderer once, on first use, after it started.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.config import CorpusConfig
from pipeline.cores import available_cores
from pipeline.corpus.identity import units_hash
from pipeline.corpus.manifest import manifest_row, read_unit_summary, rows_to_table, write_parquet_atomic
from pipeline.corpus.plan import WorkUnit
from rendering.backend import NavigableSpace, Renderer, SceneSpec
from rendering.shards import ShardWriter, file_sha256

# One renderer per (backend, options) per worker thread (normally one thread per process): GL
# contexts are created after the worker process started (spawn), never cross a fork and are
# never used by two threads at once.
_LOCAL = threading.local()


def configure_render_process(workers: int) -> None:
    """Pool initializer of a render process, run before its renderer exists.

    With at least one render process per core, Mesa's llvmpipe rasterises on the calling thread
    (LP_NUM_THREADS=0): its default, one rasteriser thread per core in every process, only adds
    hand-offs and contention there (measured: ~10% more CPU per accepted pair with 2 processes
    on 2 cores). Fewer processes than cores keep the default, so one process still uses every
    core for its full-resolution frames. A value the user set is kept.
    """
    if workers >= available_cores():
        os.environ.setdefault("LP_NUM_THREADS", "0")


def process_renderer(backend: str, options: dict[str, Any] | None = None) -> Renderer:
    from rendering.backends import create_renderer

    cache: dict[tuple, Renderer] = _LOCAL.__dict__.setdefault("renderers", {})
    key = (backend, tuple(sorted((options or {}).items())))
    if key not in cache:
        cache[key] = create_renderer(backend, **(options or {}))
    return cache[key]


def render_process_pool(
    workers: int, backend: str, options: dict[str, Any] | None = None, warm_up: bool = False
) -> ProcessPoolExecutor:
    """A spawn pool of ``workers`` render processes (:func:`configure_render_process` first in each).

    ``warm_up`` starts every process now and has it import the sampler and create its renderer,
    so that this start-up (seconds per process) overlaps whatever the caller does next instead of
    delaying the first units.
    """
    from pipeline.process_pool import tied_executor

    pool = tied_executor(workers, configure_render_process, (workers,))  # its processes die with this one
    if warm_up:
        for _ in range(workers):  # each submission starts a process while none is idle
            pool.submit(warm_up_render_process, backend, options)
    return pool


def warm_up_render_process(backend: str, options: dict[str, Any] | None = None) -> None:
    """Import the sampler and create this process's renderer ahead of its first unit."""
    import rendering.sampling  # noqa: F401  (numpy, scipy and the camera code: most of the import time)

    process_renderer(backend, options)


def process_scene(renderer: Renderer, scene: SceneSpec) -> NavigableSpace:
    """Make ``scene`` current in ``renderer`` (a :func:`process_renderer`) and return its floor,
    without reloading when it is current already: consecutive units of a scene in one worker
    then pay for the scene once (a procedural scene costs 0.1-0.8 s to build, about as much as
    rendering a 32-pair unit at 256 px). Every scene load on a process renderer goes through here."""
    # Entries hold their renderer, so that an id is never reused for another renderer while cached.
    current: dict[int, tuple[Renderer, tuple, NavigableSpace]] = _LOCAL.__dict__.setdefault("scenes", {})
    key = (scene, _file_stamp(scene.uri))  # a mesh file edited in place is loaded again
    loaded = current.get(id(renderer))
    if loaded is not None and loaded[0] is renderer and loaded[1] == key:
        return loaded[2]
    current.pop(id(renderer), None)  # a failed load leaves no scene current
    if hasattr(renderer, "load_mesh"):  # the embedded renderer: what its load_scene does, built once
        loaded = _built_scene(scene, key, getattr(renderer, "cache_dir", None))
        renderer.load_mesh(loaded.mesh, scene_id=scene.scene_id)
        navigable = loaded.navigable
    else:
        navigable = renderer.load_scene(scene)
    current[id(renderer)] = (renderer, key, navigable)
    return navigable


# Scenes a render process has built (mesh + navigable floor) and keeps after switching to another
# one, most recent last, up to this many triangles in all: with several render processes, units
# of one scene land on different processes in turn, and each switch back to a scene then uploads
# its mesh again instead of building it again (a procedural scene's build is most of its load).
BUILT_SCENES_MAX_TRIANGLES = 2_000_000


def _built_scene(scene: SceneSpec, key: tuple, cache_dir: Any) -> Any:
    """rendering.scenes.load_scene of ``scene``, from this process's recent builds when there."""
    from collections import OrderedDict

    from rendering.scenes import load_scene

    built: OrderedDict = _LOCAL.__dict__.setdefault("built", OrderedDict())
    if key in built:
        built.move_to_end(key)
        return built[key]
    loaded = load_scene(scene, cache_dir=cache_dir)
    built[key] = loaded
    while len(built) > 1 and sum(int(b.facts.get("triangles") or 0) for b in built.values()) > BUILT_SCENES_MAX_TRIANGLES:
        built.popitem(last=False)
    return loaded


def forget_current_scene(renderer: Renderer) -> None:
    """Tell :func:`process_scene` that ``renderer`` no longer holds the scene it last loaded (the
    scene check uploads meshes itself)."""
    _LOCAL.__dict__.setdefault("scenes", {}).pop(id(renderer), None)


def _file_stamp(uri: str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a scene file, None for what is not a file (procedural scenes)."""
    try:
        stat = os.stat(uri)
    except (OSError, ValueError):
        return None
    return stat.st_size, stat.st_mtime_ns


def completed_unit(unit: WorkUnit, corpus_dir: Path, config_hash: str, check_hash: bool = True) -> dict | None:
    """The unit's stored summary when the unit is complete (see module doc), else None.

    A unit with a content key (``unit.unit_key``, pipeline.corpus.identity) is complete when the
    stored summary carries the same key, whatever the rest of the config; a unit without one
    (mined units, old plans) when it carries ``config_hash``. ``check_hash=False`` only compares
    sizes: a cheap test used to decide whether a cached task result may be trusted; the unit body
    itself always compares sha256.
    """
    corpus_dir = Path(corpus_dir)
    summary = read_unit_summary(corpus_dir / unit.unit_relpath)
    if summary is None or summary.get("unit_id") != unit.unit_id:
        return None
    key = getattr(unit, "unit_key", "")
    if (summary.get("unit_key") != key) if key else (summary.get("config_hash") != config_hash):
        return None
    shard = corpus_dir / unit.shard_relpath
    if not shard.is_file() or shard.stat().st_size != summary.get("shard_size"):
        return None
    if check_hash and file_sha256(shard) != summary.get("shard_sha256"):
        return None
    return summary


def run_unit(unit_fields: dict, corpus_dir: str, corpus_json: str) -> dict:
    """Produce (or find complete) one unit; returns its summary with ``reused`` set accordingly.
    The summary records the corpus's unit-settings hash (pipeline.corpus.identity.units_hash),
    whoever calls, so the unit files of every caller are the same bytes."""
    from rendering.render_loop import Encoding, FailedPair, Tally, sampled_pairs

    unit = WorkUnit(**unit_fields)
    corpus = CorpusConfig.model_validate_json(corpus_json)
    config_hash = units_hash(corpus)
    root = Path(corpus_dir)
    done = completed_unit(unit, root, config_hash)
    if done is not None:
        return {**done, "reused": True}

    renderer = process_renderer(corpus.backend, corpus.backend_options)
    scene = unit.scene
    navigable = process_scene(renderer, scene)
    rows: list[dict] = []
    tally = Tally()
    encoding = Encoding(corpus.image_format, corpus.jpeg_quality, corpus.depth_scale)
    with ShardWriter(root / unit.shard_relpath) as writer:
        for item in sampled_pairs(renderer, navigable, scene, unit.pair_indices, corpus.seed, corpus.sampler,
                                  encoding, tally):
            if isinstance(item, FailedPair):
                continue
            writer.write(item.key, item.fields)
            rows.append(json.loads(item.fields["meta.json"]) | {"__key__": item.key})
        info = writer.close()
    failed = [{"pair_index": f.pair_index, "reason": f.reason} for f in tally.failed]
    rejections, attempts = tally.rejections, tally.attempts
    manifest_rows = [
        manifest_row({k: v for k, v in meta.items() if k != "__key__"}, meta["__key__"], unit.split,
                     unit.shard_relpath, info.sha256, unit.unit_id, unit.scene_up_axis, unit.scene_scale,
                     unit.scene_shading)
        for meta in rows
    ]
    summary = {
        "unit_id": unit.unit_id,
        "unit_key": unit.unit_key,
        "config_hash": config_hash,
        "split": unit.split,
        "scene_id": unit.scene_id,
        "shard": unit.shard_relpath,
        "shard_sha256": info.sha256,
        "shard_size": info.size,
        "pairs_requested": unit.n_pairs,
        "pairs_written": len(rows),
        "failed_pairs": failed,
        "attempts": attempts,
        "rejections": dict(sorted(rejections.items())),
        "renderer": renderer.name,
    }
    write_parquet_atomic(rows_to_table(manifest_rows, summary), root / unit.unit_relpath)
    return {**summary, "reused": False}

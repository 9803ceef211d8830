"""Re-render a corpus from a manifest alone: the stored poses and intrinsics, any backend/size.

With the same backend and settings the images come out byte-identical (rendering is a function
of scene, K and pose). At another resolution K is scaled by (new / old) per axis, which keeps the
field of view and the pixel-centre convention of rendering/camera.py. Rows keep their split and,
when they have one, their shard; rows without a shard (an imported CroCo manifest) are grouped
per split and scene into shards of ``pairs_per_shard``.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.corpus.build import CORPUS_FILE, MANIFEST_FILE, dump_json
from pipeline.corpus.manifest import (
    manifest_row, read_manifest, row_to_meta, rows_to_table, scale_from_text, write_parquet_atomic,
)
from rendering.backend import SceneSpec
from rendering.sampling import SamplerConfig, render_pair_at_poses
from rendering.layout import CorpusLayout
from rendering.render_loop import Encoding, FailedPair, rendered_pairs
from rendering.scene_uri import is_procedural, mesh_path
from rendering.shards import ShardWriter, atomic_write_bytes


class RegenerateError(ValueError):
    """The manifest or the output folder cannot be used."""


def scale_intrinsics(K: np.ndarray, old_size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """K for the same camera at another image size (width, height)."""
    sx, sy = new_size[0] / old_size[0], new_size[1] / old_size[1]
    return np.diag([sx, sy, 1.0]) @ np.asarray(K, dtype=np.float64)


def _groups(rows: list[dict], pairs_per_shard: int) -> list[tuple[str, str, list[dict]]]:
    """(split, shard relpath, rows) in manifest order."""
    by_shard: dict[tuple[str, str], list[dict]] = defaultdict(list)
    loose: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("shard"):
            by_shard[(row["split"], row["shard"])].append(row)
        else:
            loose[(row.get("split") or "train", row["scene_id"])].append(row)
    groups = [(split, shard, group) for (split, shard), group in by_shard.items()]
    used = defaultdict(set)
    for split, shard, _ in groups:
        used[split].add(shard)
    counter: dict[str, int] = defaultdict(int)
    for (split, _scene), group in loose.items():
        group = sorted(group, key=lambda r: r["pair_index"])
        for start in range(0, len(group), pairs_per_shard):
            while CorpusLayout.shard_relpath(split, counter[split]) in used[split]:
                counter[split] += 1
            shard = CorpusLayout.shard_relpath(split, counter[split])
            used[split].add(shard)
            groups.append((split, shard, group[start:start + pairs_per_shard]))
    return groups


def _source_settings(manifest: Path) -> dict:
    """The corpus config next to the manifest, when there is one (same settings by default)."""
    info_path = Path(manifest).parent / CORPUS_FILE
    if info_path.is_file():
        try:
            return json.loads(info_path.read_text()).get("config", {})
        except (OSError, ValueError):
            return {}
    return {}


def regenerate_corpus(
    manifest: Path,
    out: Path,
    width: int | None = None,
    height: int | None = None,
    backend: str | None = None,
    backend_options: dict | None = None,
    pairs_per_shard: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Render every row of ``manifest`` into a corpus under ``out``; returns its corpus.json."""
    from pipeline.corpus.unit import process_renderer, process_scene

    manifest, out = Path(manifest), Path(out)
    rows = read_manifest(manifest).to_pylist()
    if not rows:
        raise RegenerateError(f"manifest {manifest} has no rows")
    check_rows(manifest, rows)
    if (width is None) != (height is None):
        raise RegenerateError("give both --width and --height, or neither")
    _claim_output(out, manifest)
    source = _source_settings(manifest)
    sampler = SamplerConfig(**source["sampler"]) if "sampler" in source else SamplerConfig()
    image_format = source.get("image_format", "jpg")
    jpeg_quality = source.get("jpeg_quality", 95)
    backend = backend or source.get("backend", "embedded")
    options = backend_options if backend_options is not None else source.get("backend_options", {})
    renderer = process_renderer(backend, options)

    out_rows: list[dict] = []
    shards = []
    current_scene: str | None = None
    done = 0
    for split, shard_rel, group in _groups(rows, pairs_per_shard):
        with ShardWriter(out / shard_rel) as writer:
            metas = []
            for row in group:
                meta = row_to_meta(row)
                # manifests from before shading was an option were rendered unlit
                scene = SceneSpec(meta["scene_id"], meta["scene_uri"], row.get("scene_up_axis") or "y",
                                  scale_from_text(row.get("scene_scale")), row.get("scene_shading") or "unlit")
                if meta["scene_id"] != current_scene:
                    process_scene(renderer, scene)
                    current_scene = meta["scene_id"]
                old = (meta["width"], meta["height"])
                new = (width, height) if width is not None else old

                def render(meta=meta, scene=scene, new=new, old=old):
                    return render_pair_at_poses(
                        renderer, scene, meta["pair_index"], meta["seed"],
                        scale_intrinsics(meta["K1"], old, new), scale_intrinsics(meta["K2"], old, new),
                        np.asarray(meta["cam2world1"]), np.asarray(meta["cam2world2"]), sampler.covis_method,
                        width=new[0], height=new[1], attempts=meta["attempts"],
                        rejections=meta.get("rejections") or {}, config=sampler,
                    )

                encoding = Encoding(image_format, jpeg_quality, meta["depth_scale"])
                (item,) = rendered_pairs([(meta["pair_index"], row["key"], render)], encoding)
                if isinstance(item, FailedPair):
                    raise RegenerateError(f"pair {row['key']}: {item.reason}")
                writer.write(item.key, item.fields)
                metas.append((item.key, json.loads(item.fields["meta.json"]), scene))
                done += 1
                if progress is not None:
                    progress(done, len(rows))
            info = writer.close()
        out_rows += [manifest_row(m, k, split, shard_rel, info.sha256, "regenerate", sc.up_axis, sc.scale, sc.shading)
                     for k, m, sc in metas]
        shards.append({"path": shard_rel, "split": split, "unit_id": "regenerate", "samples": len(metas),
                       "size": info.size, "sha256": info.sha256})
    write_parquet_atomic(rows_to_table(out_rows), out / MANIFEST_FILE)
    pairs = {s: sum(1 for r in out_rows if r["split"] == s) for s in ("train", "val")}
    corpus_info = {
        "regenerated_from": str(manifest.resolve()),
        "config": {**source, "backend": renderer.name, "image_format": image_format, "jpeg_quality": jpeg_quality,
                   "sampler": sampler.model_dump(mode="json")},
        "counts": {"pairs": pairs, "pairs_total": len(out_rows), "shards": len(shards)},
        "shards": shards,
        "manifest": MANIFEST_FILE,
    }
    atomic_write_bytes(out / CORPUS_FILE, dump_json(corpus_info))
    (out / INCOMPLETE_MARKER).unlink(missing_ok=True)
    return corpus_info


INCOMPLETE_MARKER = ".regenerate-incomplete"


def _claim_output(out: Path, manifest: Path) -> None:
    """Make ``out`` ours: refuse a finished corpus or foreign files; clear our own partial output.

    While regenerate writes, ``out`` holds a marker naming the manifest; a run that failed or was
    killed leaves it, so its retry knows the shards and manifest there are its own and replaces
    them instead of refusing the folder.
    """
    layout = CorpusLayout(out)
    marker = out / INCOMPLETE_MARKER
    if marker.is_file():
        shutil.rmtree(layout.shards_root, ignore_errors=True)
        layout.manifest.unlink(missing_ok=True)
    elif layout.info.exists() or layout.manifest.exists() or layout.shards_root.exists():
        raise RegenerateError(f"{out} already holds a corpus; choose an empty --out (nothing was changed)")
    atomic_write_bytes(marker, dump_json({"regenerating_from": str(Path(manifest).resolve())}))


MATRIX_COLUMNS = {"K1": 9, "K2": 9, "cam2world1": 16, "cam2world2": 16}


def check_rows(manifest: Path, rows: list[dict]) -> None:
    """Refuse the manifest before anything is written when a row cannot be rendered: non-finite or
    ill-shaped poses and intrinsics, a bad size, a missing scene file. Names row, key and value."""
    missing_files: dict[str, int] = {}
    for index, row in enumerate(rows):
        where = f"manifest {manifest}: row {index} (key {row.get('key')!r})"
        for column, size in MATRIX_COLUMNS.items():
            value = row.get(column)
            values = np.asarray(value if value is not None else [], dtype=np.float64).reshape(-1)
            if values.size != size:
                raise RegenerateError(f"{where}: {column} has {values.size} values, expected {size}")
            if not np.all(np.isfinite(values)):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise RegenerateError(f"{where}: {column}[{bad}] = {values[bad]} is not finite")
        for column in ("width", "height"):
            value = row.get(column)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RegenerateError(f"{where}: {column} = {value!r} is not a positive integer")
        uri = row.get("scene_uri")
        if not isinstance(uri, str) or not uri:
            raise RegenerateError(f"{where}: scene_uri = {uri!r} is not a scene")
        if not is_procedural(uri) and uri not in missing_files:
            path = mesh_path(uri)
            if not path.is_file():
                missing_files[uri] = index
    if missing_files:
        uri, index = next(iter(missing_files.items()))
        more = f" (and {len(missing_files) - 1} more scene files)" if len(missing_files) > 1 else ""
        raise RegenerateError(f"manifest {manifest}: row {index} (key {rows[index].get('key')!r}): scene_uri = "
                              f"{uri!r}: the scene file does not exist{more}")

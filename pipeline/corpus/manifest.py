"""Parquet manifests: one row per pair with every meta.json field, plus where the pair is stored.

Matrices are stored row-major as flat lists of float64 (K: 9 values, cam2world: 16), dict fields
(rejection counts) as JSON text; :func:`row_to_meta` undoes both, so a manifest alone is enough to
re-render a corpus. Unit manifests carry their unit's summary in the Parquet key-value metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rendering.atomic import atomic_path
from rendering.shards import MATRIX_SHAPES

UNIT_METADATA_KEY = b"crocopipe.unit"
# Where a pair lives (and how its scene file is oriented); the other columns are meta.json's fields.
LOCATION_COLUMNS = ("key", "split", "shard", "shard_sha256", "unit_id", "scene_up_axis", "scene_scale", "scene_shading")
JSON_FIELDS = ("rejections",)


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or lacks required columns."""


def flatten_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json -> one flat manifest row (matrices flattened, dicts as JSON text)."""
    row: dict[str, Any] = {}
    for name, value in meta.items():
        if name in MATRIX_SHAPES:
            row[name] = np.asarray(value, dtype=np.float64).reshape(-1).tolist()
        elif isinstance(value, dict):
            row[name] = json.dumps(value, sort_keys=True)
        elif isinstance(value, list):
            row[name] = json.dumps(value)
        else:
            row[name] = value
    return row


def row_to_meta(row: dict[str, Any]) -> dict[str, Any]:
    """A manifest row -> the meta.json fields (location columns dropped)."""
    meta: dict[str, Any] = {}
    for name, value in row.items():
        if name in LOCATION_COLUMNS:
            continue
        if name in MATRIX_SHAPES and value is not None:
            meta[name] = np.asarray(value, dtype=np.float64).reshape(MATRIX_SHAPES[name]).tolist()
        elif name in JSON_FIELDS and isinstance(value, str):
            meta[name] = json.loads(value)
        else:
            meta[name] = value
    return meta


def manifest_row(meta: dict[str, Any], key: str, split: str, shard: str | None, shard_sha256: str | None,
                 unit_id: str, scene_up_axis: str = "y", scene_scale: float | str | None = None,
                 scene_shading: str = "unlit") -> dict:
    """``scene_scale`` is stored as text: "" (metres), "auto" or the number of metres per unit."""
    return {"key": key, "split": split, "shard": shard, "shard_sha256": shard_sha256, "unit_id": unit_id,
            "scene_up_axis": scene_up_axis, "scene_scale": scale_text(scene_scale), "scene_shading": scene_shading,
            **flatten_meta(meta)}


def scale_text(scale: float | str | None) -> str:
    return "" if scale is None else str(scale)


def scale_from_text(text: str | None) -> float | str | None:
    """Inverse of :func:`scale_text` (missing column or "": metres)."""
    if not text:
        return None
    return "auto" if text == "auto" else float(text)


def rows_to_table(rows: list[dict], unit_summary: dict | None = None) -> pa.Table:
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in LOCATION_COLUMNS})
    if unit_summary is not None:
        table = table.replace_schema_metadata({UNIT_METADATA_KEY: json.dumps(unit_summary, sort_keys=True).encode()})
    return table


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write to a hidden temporary sibling, fsync, rename: a parquet under its final name is whole."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: Path) -> pa.Table:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ManifestError(f"manifest {path} is not a readable Parquet file: {err}") from err
    for column in ("key", "scene_id", "scene_uri", "pair_index", "K1", "K2", "cam2world1", "cam2world2"):
        if column not in table.column_names:
            raise ManifestError(f"manifest {path} lacks the column {column!r} (has {table.column_names})")
    return table


def read_unit_summary(path: Path) -> dict | None:
    """The summary stored in a unit manifest, or None when the file is unreadable or foreign."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    blob = metadata.get(UNIT_METADATA_KEY)
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        return None


def merge_tables(paths: list[Path]) -> pa.Table:
    """Concatenate unit manifests (schemas unified; empty units contribute no rows)."""
    tables = [pq.read_table(p) for p in paths]
    tables = [t.replace_schema_metadata(None) for t in tables if t.num_rows > 0]
    if not tables:
        return rows_to_table([])
    return pa.concat_tables(tables, promote_options="default")

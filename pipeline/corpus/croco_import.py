"""Turn the per-scene ``metadata.json`` of CroCo's released Habitat generator into a pose manifest.

The released metadata (one file per scene) holds, per multiview acquisition ``"00000042"``:
``positions`` (camera centres, Habitat world frame), ``orientations`` (unit quaternions in
(w, x, y, z) order, Habitat's camera frame: x right, y up, -z forward), ``covisibility_ratios``,
``valid_fractions`` and ``pairwise_visibility_ratios`` ([i][j]: pixels of view i whose point has a
neighbour in view j, over H*W). Top-level keys give ``scene`` (a path, relative to the dataset
folders once packed), ``resolution`` ([height, width]), ``hfov`` (degrees) and ``views_count``.
Poses are converted with rendering.backends.habitat.frame only. The result is a manifest without shards,
which ``regenerate`` renders into a corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.corpus.manifest import manifest_row, rows_to_table, write_parquet_atomic
from rendering.scene_uri import scene_id_for_uri
from rendering.camera import intrinsics_from_fov
from rendering.backends.habitat.frame import habitat_state_to_opencv_pose
from rendering.pair import SCHEMA_VERSION, sample_key

IMPORT_UNIT = "croco-metadata"
VAL_FOLDERS = ("val", "minival")


class CrocoMetadataError(ValueError):
    """A metadata file is missing or does not have the released generator's format."""


def _split_of(scene: str, split: str) -> str:
    if split != "auto":
        return split
    return "val" if any(part in VAL_FOLDERS for part in Path(scene).parts) else "train"


def scene_up_axis(scene: str, up_axis: str = "auto") -> str:
    """CroCo's scenes are Z-up Matterport-style meshes (HM3D, ScanNet, Gibson, habitat test
    scenes) except ReplicaCAD, which is glTF +Y up; ``auto`` decides from the scene path."""
    if up_axis != "auto":
        return up_axis
    return "y" if "replica" in scene.lower() else "z"


def metadata_rows(path: Path, scene_root: Path | None = None, split: str = "auto", depth_scale: float = 0.001,
                  up_axis: str = "auto") -> list[dict]:
    """Manifest rows of one metadata.json (pairs of view 0 with every other view of each entry)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CrocoMetadataError(f"{path}: metadata file does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CrocoMetadataError(f"{path}: not a readable JSON file: {err}") from None
    try:
        scene = str(data["scene"])
        height, width = (int(v) for v in data.get("resolution", (256, 256)))
        hfov = float(data.get("hfov", 60.0))
        multiviews = data["multiviews"]
    except (KeyError, TypeError, ValueError) as err:
        raise CrocoMetadataError(f"{path}: missing or malformed top-level key ({err!r}); expected scene, "
                                 "resolution, hfov, multiviews") from None
    if not isinstance(multiviews, dict):
        raise CrocoMetadataError(f"{path}: 'multiviews' must be an object keyed by acquisition index")
    uri = str((Path(scene_root) / scene).resolve()) if scene_root is not None and not Path(scene).is_absolute() else scene
    scene_id = scene_id_for_uri(scene)
    K = intrinsics_from_fov(width, height, hfov)
    rows = []
    for label in sorted(multiviews):
        entry = multiviews[label]
        where = f"{path}: multiviews[{label!r}]"
        try:
            index = int(label)
            positions = np.asarray(entry["positions"], dtype=np.float64)
            orientations = np.asarray(entry["orientations"], dtype=np.float64)
            pairwise = np.asarray(entry["pairwise_visibility_ratios"], dtype=np.float64)
            valid = np.asarray(entry["valid_fractions"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise CrocoMetadataError(f"{where}: missing or malformed field ({err!r})") from None
        n = len(positions)
        if n < 2 or positions.shape != (n, 3) or orientations.shape != (n, 4) or pairwise.shape != (n, n) or valid.shape != (n,):
            raise CrocoMetadataError(
                f"{where}: expected positions (N,3), orientations (N,4) wxyz, pairwise_visibility_ratios (N,N), "
                f"valid_fractions (N,) with N >= 2; got {positions.shape}, {orientations.shape}, {pairwise.shape}, {valid.shape}"
            )
        try:
            poses = [habitat_state_to_opencv_pose(positions[v], orientations[v]) for v in range(n)]
        except ValueError as err:
            raise CrocoMetadataError(f"{where}: {err}") from None
        for other in range(1, n):
            pair_index = index * (n - 1) + (other - 1)
            one_two, two_one = float(pairwise[0, other]), float(pairwise[other, 0])
            meta = {
                "schema_version": SCHEMA_VERSION,
                "scene_id": scene_id,
                "scene_uri": uri,
                "pair_index": pair_index,
                "seed": 0,
                "renderer": "habitat",
                "width": width,
                "height": height,
                "depth_scale": float(depth_scale),
                "K1": K.tolist(),
                "K2": K.tolist(),
                "cam2world1": poses[0].tolist(),
                "cam2world2": poses[other].tolist(),
                "covis": min(one_two, two_one),
                "covis_1to2": one_two,
                "covis_2to1": two_one,
                "covis_1to2_valid": one_two / valid[0] if valid[0] > 0 else 0.0,
                "covis_2to1_valid": two_one / valid[other] if valid[other] > 0 else 0.0,
                "valid1": float(valid[0]),
                "valid2": float(valid[other]),
                "attempts": 0,
                "rejections": {},
            }
            rows.append(manifest_row(meta, sample_key(scene_id, pair_index), _split_of(scene, split), None, None,
                                     IMPORT_UNIT, scene_up_axis(scene, up_axis)))
    return rows


def import_croco_metadata(paths: list[Path], out: Path, scene_root: Path | None = None, split: str = "auto",
                          overwrite: bool = False, up_axis: str = "auto") -> int:
    """Write one pose manifest for all ``paths``; returns the number of pairs. Nothing is written
    when any file is bad or two files describe scenes with the same id."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise CrocoMetadataError(f"{out} already exists; choose another --out (nothing was written)")
    rows: list[dict] = []
    owner: dict[str, Path] = {}
    for path in paths:
        file_rows = metadata_rows(path, scene_root, split, up_axis=up_axis)
        for scene_id in {r["scene_id"] for r in file_rows}:
            if scene_id in owner:
                raise CrocoMetadataError(f"{path} and {owner[scene_id]} both describe scene id {scene_id!r}")
            owner[scene_id] = Path(path)
        rows += file_rows
    if not rows:
        raise CrocoMetadataError("the metadata files hold no pairs (empty 'multiviews'); nothing was written")
    write_parquet_atomic(rows_to_table(rows), out)
    return len(rows)

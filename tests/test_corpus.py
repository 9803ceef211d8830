"""Corpus library without Prefect: units, merge, verify, regenerate, CroCo import, CLI errors.

Scenes are small trimesh rooms written as GLB files (real meshes through the real renderer);
images are 32x32 so that everything here runs in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import trimesh
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_run_config
from pipeline.corpus import (
    merge_corpus,
    plan_units,
    prepare_corpus_dir,
    run_unit,
    verify_corpus,
)
from pipeline.corpus.croco_import import import_croco_metadata
from pipeline.corpus.identity import units_hash
from pipeline.corpus.manifest import read_manifest, row_to_meta
from pipeline.corpus.regenerate import regenerate_corpus
from rendering.camera import look_at
from rendering.backends.habitat.frame import opencv_pose_to_habitat_state
from rendering.shards import file_sha256, read_shard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_room(path: Path, seed: int) -> Path:
    """An 8 x 8 m room with a floor, ceiling, four walls and a few boxes, face-coloured."""
    rng = np.random.default_rng(seed)
    parts = []
    for extents, centre in [
        ([8, 0.1, 8], [0, -0.05, 0]),
        ([8, 0.1, 8], [0, 2.8, 0]),
        ([0.1, 2.8, 8], [4, 1.4, 0]),
        ([0.1, 2.8, 8], [-4, 1.4, 0]),
        ([8, 2.8, 0.1], [0, 1.4, 4]),
        ([8, 2.8, 0.1], [0, 1.4, -4]),
    ]:
        box = trimesh.creation.box(extents=extents)
        box.apply_translation(centre)
        parts.append(box)
    for _ in range(4):
        box = trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3))
        box.apply_translation([rng.uniform(-3, 3), 0.4, rng.uniform(-3, 3)])
        parts.append(box)
    scene = trimesh.Scene()
    for i, part in enumerate(parts):
        colours = rng.integers(0, 255, (len(part.faces), 4)).astype(np.uint8)
        colours[:, 3] = 255
        part.visual.face_colors = colours
        scene.add_geometry(part, node_name=f"part{i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.export(path)
    return path


def write_config(folder: Path, run_dir: str = "run", extra: str = "", scenes: str | None = None) -> Path:
    """A tiny corpus: 2 scenes x 4 pairs, 2 pairs per shard, 32 px; one scene in val."""
    make_room(folder / "rooms" / "room_a.glb", 0)
    make_room(folder / "rooms" / "room_b.glb", 1)
    scenes = scenes or 'uris = ["rooms/room_a.glb", "rooms/room_b.glb"]'
    path = folder / "run.toml"
    path.write_text(
        f'run_dir = "{run_dir}"\n[corpus]\nseed = 5\npairs_per_scene = 4\npairs_per_shard = 2\n'
        f"val_fraction = 0.5\nworkers = 2\n{extra}\n[corpus.scenes]\n{scenes}\n"
        "[corpus.sampler]\nwidth = 32\nheight = 32\n"
    )
    return path


def build_corpus(config_path: Path) -> Path:
    """Generate a corpus with the plain functions (what the flow's tasks call, so that its unit
    files equal those of `crocopipe generate`)."""
    run = load_run_config(config_path)
    corpus = run.corpus
    units = plan_units(corpus)
    prepare_corpus_dir(run.corpus_dir, corpus, units)
    for unit in units:
        run_unit(unit.as_dict(), str(run.corpus_dir), corpus.model_dump_json())
    merge_corpus(run.corpus_dir, corpus, units)
    return run.corpus_dir


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    return build_corpus(write_config(folder))


def shard_hashes(corpus: Path) -> dict[str, str]:
    return {p.relative_to(corpus).as_posix(): file_sha256(p) for p in sorted(corpus.glob("shards/*/pairs-*.tar"))}


def test_corpus_layout_manifest_and_card(corpus_dir):
    info = json.loads((corpus_dir / "corpus.json").read_text())
    assert info["counts"]["pairs_total"] == 8 and info["counts"]["scenes"] == {"train": 1, "val": 1}
    assert sorted(shard_hashes(corpus_dir)) == [
        "shards/train/pairs-000000.tar", "shards/train/pairs-000001.tar",
        "shards/val/pairs-000000.tar", "shards/val/pairs-000001.tar",
    ]
    assert {s["path"]: s["sha256"] for s in info["shards"]} == shard_hashes(corpus_dir)
    assert info["thresholds"]["min_covis"] == 0.5
    rows = read_manifest(corpus_dir / "manifest.parquet").to_pylist()
    samples = {s["__key__"]: (rel, s) for rel in shard_hashes(corpus_dir) for s in read_shard(corpus_dir / rel)}
    assert sorted(r["key"] for r in rows) == sorted(samples)  # manifest rows == shard samples
    for row in rows:
        rel, sample = samples[row["key"]]
        assert row["shard"] == rel and row_to_meta(row) == sample["meta"]
        assert row["covis"] >= 0.5 and row["split"] in ("train", "val")
    splits = {r["scene_id"]: r["split"] for r in rows}
    assert sorted(splits.values()) == ["train", "val"]  # split by scene
    for name in ("overlap_histogram.png", "contact_sheet.png"):
        data = (corpus_dir / "card" / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        import cv2

        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[0] > 32
    assert "| train | 1 | 4 | 2 |" in (corpus_dir / "card" / "stats.md").read_text()
    assert not list(corpus_dir.rglob("*.tmp"))
    assert verify_corpus(corpus_dir).ok


def test_generated_shards_read_with_stock_webdataset(corpus_dir):
    import webdataset as wds

    urls = [str(corpus_dir / rel) for rel in shard_hashes(corpus_dir)]
    ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb8")  # stock decoders only
    ours = {s["__key__"]: s for rel in shard_hashes(corpus_dir) for s in read_shard(corpus_dir / rel)}
    n = 0
    for sample in ds:
        mine = ours[sample["__key__"]]
        assert np.array_equal(sample["img1.jpg"], mine["img1"]) and np.array_equal(sample["img2.jpg"], mine["img2"])
        scale = mine["meta"]["depth_scale"]
        assert np.array_equal(sample["depth1.npy"] * np.float32(scale), mine["depth1"])
        assert sample["depth2.npy"].dtype == np.uint16 and sample["meta.json"] == mine["meta"]
        n += 1
    assert n == 8


def test_units_are_idempotent_and_redo_a_deleted_shard(corpus_dir, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus_dir, copy)
    run_units = json.loads((copy / "plan.json").read_text())["units"]
    config = json.loads((copy / "corpus.json").read_text())["config"]
    from pipeline.config import CorpusConfig

    corpus = CorpusConfig.model_validate(config)
    first = run_units[0]
    shard = copy / f"shards/{first['split']}/pairs-{first['shard_index']:06d}.tar"
    before = file_sha256(shard)
    again = run_unit(first, str(copy), corpus.model_dump_json())
    assert again["reused"] is True
    assert again["config_hash"] == units_hash(corpus) != corpus.content_hash()  # what every caller records
    shard.unlink()
    redone = run_unit(first, str(copy), corpus.model_dump_json())
    assert redone["reused"] is False and file_sha256(shard) == before == redone["shard_sha256"]


def _broken_copy(corpus_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(corpus_dir, copy)
    return copy


def test_verify_catches_flipped_byte(corpus_dir, tmp_path):
    copy = _broken_copy(corpus_dir, tmp_path)
    shard = copy / "shards/train/pairs-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01
    shard.write_bytes(bytes(data))
    report = verify_corpus(copy)
    assert not report.ok
    assert any("shards/train/pairs-000001.tar: sha256" in p for p in report.problems), report.summary()
    result = CliRunner().invoke(app, ["verify", str(copy)])
    assert result.exit_code == 1 and "sha256" in result.output


def test_verify_catches_truncated_shard(corpus_dir, tmp_path):
    copy = _broken_copy(corpus_dir, tmp_path)
    shard = copy / "shards/val/pairs-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    problems = verify_corpus(copy).problems
    assert any("shards/val/pairs-000000.tar: size 3000 bytes" in p for p in problems)
    assert any("pairs-000000.tar" in p and ("truncated" in p or "unreadable" in p) for p in problems), problems


def test_verify_catches_missing_shard(corpus_dir, tmp_path):
    copy = _broken_copy(corpus_dir, tmp_path)
    (copy / "shards/train/pairs-000000.tar").unlink()
    problems = verify_corpus(copy).problems
    assert "missing shard shards/train/pairs-000000.tar" in problems


def test_verify_catches_manifest_row_without_sample(corpus_dir, tmp_path):
    import pyarrow as pa

    copy = _broken_copy(corpus_dir, tmp_path)
    table = pq.read_table(copy / "manifest.parquet")
    rows = table.to_pylist()
    ghost = dict(rows[0], key=rows[0]["key"][:-8] + "00000099", pair_index=99)
    pq.write_table(pa.Table.from_pylist(rows + [ghost], schema=table.schema), copy / "manifest.parquet")
    problems = verify_corpus(copy).problems
    assert any(f"({ghost['key']}) has no sample in {ghost['shard']}" in p for p in problems), problems
    # and the other way round: a sample whose row is gone
    pq.write_table(pa.Table.from_pylist(rows[1:], schema=table.schema), copy / "manifest.parquet")
    problems = verify_corpus(copy).problems
    assert any(f"sample {rows[0]['key']} in {rows[0]['shard']} has no manifest row" in p for p in problems)


def test_regenerate_is_byte_identical_and_scales_intrinsics(corpus_dir, tmp_path):
    same = tmp_path / "same"
    regenerate_corpus(corpus_dir / "manifest.parquet", same)
    assert shard_hashes(same) == shard_hashes(corpus_dir)  # same backend + settings: same bytes
    assert verify_corpus(same).ok
    bigger = tmp_path / "bigger"
    result = CliRunner().invoke(app, ["regenerate", str(corpus_dir / "manifest.parquet"), "--out", str(bigger),
                                      "--width", "48", "--height", "48"])
    assert result.exit_code == 0, result.output
    old = {r["key"]: r for r in read_manifest(corpus_dir / "manifest.parquet").to_pylist()}
    for row in read_manifest(bigger / "manifest.parquet").to_pylist():
        assert row["width"] == 48 and row["cam2world1"] == old[row["key"]]["cam2world1"]
        assert np.allclose(np.reshape(row["K1"], (3, 3))[:2], 1.5 * np.reshape(old[row["key"]]["K1"], (3, 3))[:2])
    assert next(read_shard(bigger / "shards/train/pairs-000000.tar"))["img1"].shape == (48, 48, 3)
    refused = CliRunner().invoke(app, ["regenerate", str(corpus_dir / "manifest.parquet"), "--out", str(same)])
    assert refused.exit_code == 2 and "already holds a corpus" in refused.output


def _croco_metadata(path: Path, scene: str, poses: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """A metadata.json in the layout of CroCo's released Habitat generator."""
    multiviews = {}
    for i, (pose1, pose2) in enumerate(poses):
        states = [opencv_pose_to_habitat_state(p) for p in (pose1, pose2)]
        multiviews[f"{i:08d}"] = {
            "positions": [s[0].tolist() for s in states],
            "orientations": [s[1].tolist() for s in states],  # (w, x, y, z)
            "covisibility_ratios": [0.9, 0.6],
            "valid_fractions": [0.9, 0.8],
            "pairwise_visibility_ratios": [[0.9, 0.6], [0.55, 0.8]],
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "scene_dataset_config_file": "", "scene": scene, "navmesh": "", "views_count": 2, "size": len(poses),
        "generate_depth": True, "resolution": [32, 32], "hfov": 60, "multiviews": multiviews,
    }))


def test_import_croco_metadata_then_regenerate(tmp_path):
    make_room(tmp_path / "scenes" / "minival" / "room_c.glb", 2)
    pose_a = look_at(np.array([0.0, 1.5, 0.0]), np.array([2.0, 1.2, 3.0]))
    pose_b = look_at(np.array([0.6, 1.4, -0.5]), np.array([2.0, 1.2, 3.0]))
    meta_path = tmp_path / "meta" / "metadata.json"
    _croco_metadata(meta_path, "minival/room_c.glb", [(pose_a, pose_b), (pose_b, pose_a)])
    out = tmp_path / "imported.parquet"
    result = CliRunner().invoke(app, ["import-croco-metadata", str(meta_path), "--out", str(out),
                                      "--scene-root", str(tmp_path / "scenes"), "--up-axis", "y"])
    assert result.exit_code == 0, result.output
    rows = read_manifest(out).to_pylist()
    assert [r["pair_index"] for r in rows] == [0, 1] and {r["split"] for r in rows} == {"val"}
    meta = row_to_meta(rows[0])
    assert np.allclose(meta["cam2world1"], pose_a) and np.allclose(meta["cam2world2"], pose_b)
    assert np.allclose(np.asarray(meta["K1"])[:, 2], [16, 16, 1]) and meta["width"] == 32
    assert meta["covis_1to2"] == 0.6 and meta["covis_2to1"] == 0.55 and meta["covis"] == 0.55
    assert meta["scene_uri"] == str(tmp_path / "scenes" / "minival" / "room_c.glb")
    assert rows[0]["scene_up_axis"] == "y"  # HM3D-style paths default to z (see --up-axis auto)
    again = CliRunner().invoke(app, ["import-croco-metadata", str(meta_path), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output

    corpus = tmp_path / "rerendered"
    info = regenerate_corpus(out, corpus, backend="embedded")
    assert info["counts"]["pairs"] == {"train": 0, "val": 2}
    sample = next(read_shard(corpus / "shards/val/pairs-000000.tar"))
    assert sample["img1"].shape == (32, 32, 3) and sample["meta"]["renderer"] == "embedded"
    assert np.allclose(sample["meta"]["cam2world1"], pose_a)
    assert verify_corpus(corpus).ok


def test_croco_scene_up_axis_follows_the_dataset():
    from pipeline.corpus.croco_import import scene_up_axis

    assert scene_up_axis("hm3d/val/00800-TEEsavR23oF/TEEsavR23oF.basis.glb") == "z"
    assert scene_up_axis("replica_cad_baked_lighting/stages/Baked_sc0_staging_00.glb") == "y"
    assert scene_up_axis("hm3d/x.glb", "y") == "y"


def test_bad_croco_metadata_is_named(tmp_path):
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps({"scene": "x.glb", "resolution": [32, 32], "hfov": 60,
                               "multiviews": {"00000000": {"positions": [[0, 0, 0]], "orientations": [[1, 0, 0, 0]]}}}))
    result = CliRunner().invoke(app, ["import-croco-metadata", str(bad), "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2 and "multiviews['00000000']" in result.output
    assert not (tmp_path / "m.parquet").exists()


# --------------------------------------------------------------------------------- bad input


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("[corpus]", "[corpus\n"), "not valid TOML"),
        (lambda t: t.replace("seed = 5", "seed = 5\nseeed = 1"), "corpus.seeed: unknown key"),
        (lambda t: t.replace("width = 32", "width = 2"), "corpus.sampler.width = 2"),
        (lambda t: t.replace("rooms/room_b.glb", "rooms/room_z.glb"), "room_z.glb' does not exist"),
        (lambda t: t.replace("[corpus]", "[corpus]\nval_scenes = [\"nope\"]"), "unknown scene ids ['nope']"),
    ],
)
def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, mutate, message):
    path = write_config(tmp_path)
    path.write_text(mutate(path.read_text()))
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(app, ["generate", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert _snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_other_config_never_overwrites_an_existing_corpus(corpus_dir, tmp_path):
    folder = tmp_path / "f"
    shutil.copytree(corpus_dir.parent.parent, folder)
    path = folder / "run.toml"
    path.write_text(path.read_text().replace("seed = 5", "seed = 6"))
    before = _snapshot(folder / "run")
    result = CliRunner().invoke(app, ["generate", str(path)])
    assert result.exit_code == 2 and "different [corpus] config" in result.output
    assert _snapshot(folder / "run") == before


def test_second_concurrent_run_is_refused(tmp_path):
    import subprocess
    import sys

    path = write_config(tmp_path)
    code = f"from pipeline.corpus import RunLock; RunLock({str(tmp_path / 'run')!r}).acquire(); print('held', flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])  # another command holds the run folder
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(app, ["generate", str(path)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 3
    assert "in use by another run" in result.output and "pid" in result.output
    assert not (tmp_path / "run" / "corpus").exists()

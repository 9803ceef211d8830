"""Mined corpora: same shards, manifest, verify and card as rendered ones, plus the pair list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError
from pipeline.corpus.build import prepare_corpus_dir
from pipeline.corpus.mine import merge_mined_corpus, plan_mine_units, run_mine_unit
from pipeline.corpus.verify import verify_corpus
from pipeline.mine_config import load_mine_config
from rendering.captures import CaptureError
from rendering.shards import read_shard
from tests.capture_layouts import write_arkitscenes, write_scannet

CONFIG = """
run_dir = "run"
[mine]
val_sequences = ["arkitscenes-41069025"]
width = 32
height = 24
crops = {crops}
[[mine.sources]]
kind = "scannet"
root = "scans"
[[mine.sources]]
kind = "arkitscenes"
root = "arkit"
[mine.mining]
frame_stride = 1
max_frame_gap = 10
min_covis = 0.2
min_baseline_m = 0.0
max_pairs_per_frame = 3
"""


@pytest.fixture(scope="module")
def rendered(rendered_capture_sequence):
    return rendered_capture_sequence


def _make(tmp_path: Path, rendered, crops: bool = False) -> Path:
    write_scannet(tmp_path / "scans" / "scene0001_00", rendered, invalid=(3,))
    write_scannet(tmp_path / "scans" / "scene0002_00", rendered)
    write_arkitscenes(tmp_path / "arkit", rendered)
    path = tmp_path / "mine.toml"
    path.write_text(CONFIG.format(crops=str(crops).lower()))
    return path


def _mine(path: Path) -> tuple:
    run = load_mine_config(path)
    units = plan_mine_units(run.mine)
    prepare_corpus_dir(run.corpus_dir, run.mine, units)
    summaries = [run_mine_unit(u.as_dict(), str(run.corpus_dir), run.mine.model_dump_json(), run.mine.content_hash())
                 for u in units]
    info = merge_mined_corpus(run.corpus_dir, run.mine, units)
    return run, units, summaries, info


def test_mined_corpus_verifies_and_lists_every_pair_by_source_frames(tmp_path, rendered):
    run, units, summaries, info = _mine(_make(tmp_path, rendered, crops=True))
    assert [u.scene_id for u in units] == ["scannet-scene0001_00", "scannet-scene0002_00", "arkitscenes-41069025"]
    assert [u.split for u in units] == ["train", "train", "val"]
    report = verify_corpus(run.corpus_dir)
    assert report.ok, report.summary()
    assert info["counts"]["pairs_total"] == report.samples_checked > 0
    assert (run.corpus_dir / "card" / "stats.md").read_text().count("mined from captures (arkitscenes, scannet)") == 1
    pairs = pq.read_table(run.corpus_dir / "pairs.parquet").to_pylist()
    assert len(pairs) == info["counts"]["pairs_total"]
    by_key = {p["key"]: p for p in pairs}
    for shard in info["shards"]:
        for sample in read_shard(run.corpus_dir / shard["path"]):
            meta, row = sample["meta"], by_key[sample["__key__"]]
            assert meta["source"]["frame_ids"] == [row["frame_id1"], row["frame_id2"]]
            assert (row["dataset"], row["sequence"]) == (meta["source"]["dataset"], meta["source"]["sequence"])
            assert row["covis"] == meta["covis"] and row["crop1"] == meta["crop1"]
            assert sample["img1"].shape == (24, 32, 3) and meta["renderer"] == "capture"
            assert np.allclose(np.reshape(row["K1"], (3, 3)), meta["K1"])
    # frame 3 of scene0001_00 has no pose: it is in no pair
    assert not [p for p in pairs if p["sequence"] == "scene0001_00" and "3" in (p["frame_id1"], p["frame_id2"])]


def test_a_second_run_reuses_every_sequence_and_changes_no_byte(tmp_path, rendered):
    run, units, first, info = _mine(_make(tmp_path, rendered))
    before = {s["path"]: s["sha256"] for s in info["shards"]}
    again = [run_mine_unit(u.as_dict(), str(run.corpus_dir), run.mine.model_dump_json(), run.mine.content_hash())
             for u in units]
    assert all(s["reused"] for s in again) and not any(s["reused"] for s in first)
    assert {s["path"]: s["sha256"] for s in merge_mined_corpus(run.corpus_dir, run.mine, units)["shards"]} == before


def test_a_sequence_without_valid_poses_fails_its_unit_by_name_and_keeps_the_others(tmp_path, rendered):
    path = _make(tmp_path, rendered)
    write_scannet(tmp_path / "scans" / "scene0003_00", rendered, invalid=tuple(range(6)))
    run = load_mine_config(path)
    units = plan_mine_units(run.mine)
    prepare_corpus_dir(run.corpus_dir, run.mine, units)
    args = (str(run.corpus_dir), run.mine.model_dump_json(), run.mine.content_hash())
    done = run_mine_unit(units[0].as_dict(), *args)
    bad = next(u for u in units if u.scene_id == "scannet-scene0003_00")
    with pytest.raises(CaptureError, match=r"scannet sequence 'scene0003_00' at .*: no frame has a valid pose"):
        run_mine_unit(bad.as_dict(), *args)
    assert run_mine_unit(units[0].as_dict(), *args)["shard_sha256"] == done["shard_sha256"]


def test_config_errors_name_the_key(tmp_path, rendered):
    path = _make(tmp_path, rendered)
    path.write_text(CONFIG.format(crops="false").replace('kind = "scannet"', 'kind = "kinect"'))
    with pytest.raises(ConfigError, match=r"mine.sources\[0\].kind = 'kinect': unknown capture kind"):
        load_mine_config(path)
    path.write_text(CONFIG.format(crops="false").replace("frame_stride = 1", "frame_strid = 1"))
    with pytest.raises(ConfigError, match=r"mine.mining.frame_strid: unknown key; allowed keys here: .*frame_stride"):
        load_mine_config(path)
    path.write_text(CONFIG.format(crops="false").replace('root = "arkit"', 'root = "nowhere"'))
    from pipeline.corpus.plan import CorpusPlanError

    with pytest.raises(CorpusPlanError, match=r"mine.sources\[1\]: arkitscenes root .*nowhere is not a folder"):
        plan_mine_units(load_mine_config(path).mine)


@pytest.mark.slow
def test_crocopipe_mine_runs_the_flow_and_resumes(tmp_path, rendered, prefect_server):
    from conftest import prefect_client_env

    path = _make(tmp_path, rendered)
    command = [sys.executable, "-m", "pipeline.cli", "mine", str(path)]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    env = {**prefect_client_env(prefect_server[0]), **env}  # the session's Prefect server
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "pairs from 3 sequences (0 reused)" in first.stdout
    assert verify_corpus(tmp_path / "run" / "corpus").ok
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "already complete" in second.stdout
    info = json.loads((tmp_path / "run" / "corpus" / "corpus.json").read_text())
    assert info["kind"] == "mined" and len(info["sequences"]) == 3


def test_a_published_pair_list_rebuilds_the_same_corpus_from_raw_data(tmp_path, rendered):
    run, units, _, info = _mine(_make(tmp_path / "a", rendered, crops=True))
    published = tmp_path / "published.parquet"
    published.write_bytes((run.corpus_dir / "pairs.parquet").read_bytes())
    # someone else's copy of the raw data, and a config that only names it and the pair list
    other = _make(tmp_path / "b", rendered, crops=True)
    other.write_text(other.read_text().replace("[mine]\n", f'[mine]\npairs = "{published}"\n'))
    run_b, units_b, summaries_b, info_b = _mine(other)
    assert [s["pairs_written"] for s in summaries_b] == [s["samples"] for s in info["shards"]]
    assert [s["sha256"] for s in info_b["shards"]] == [s["sha256"] for s in info["shards"]]  # byte-identical
    assert verify_corpus(run_b.corpus_dir).ok


def test_a_pair_list_that_does_not_match_the_raw_data_is_named(tmp_path, rendered):
    import pyarrow as pa

    from pipeline.corpus.mine import PairListError
    from pipeline.corpus.plan import CorpusPlanError

    run, units, _, _ = _mine(_make(tmp_path / "a", rendered))
    table = pq.read_table(run.corpus_dir / "pairs.parquet").to_pylist()
    table[0]["frame_id2"] = "999"
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(table), bad)
    other = _make(tmp_path / "b", rendered)
    other.write_text(other.read_text().replace("[mine]\n", f'[mine]\npairs = "{bad}"\n'))
    b = load_mine_config(other)
    units_b = plan_mine_units(b.mine)
    prepare_corpus_dir(b.corpus_dir, b.mine, units_b)
    with pytest.raises(PairListError, match=r"bad.parquet row 0 \(.*\): frame_id2 '999' is not a frame with a valid pose of scannet sequence"):
        run_mine_unit(units_b[0].as_dict(), str(b.corpus_dir), b.mine.model_dump_json(), b.mine.content_hash())
    table = [r for r in table if r["sequence"] != "scene0002_00"] + [dict(table[0], sequence="scene0404_00")]
    pq.write_table(pa.Table.from_pylist(table), bad)
    with pytest.raises(CorpusPlanError, match=r"lists pairs of 1 sequence\(s\) that no mine.sources entry provides: \['scannet/scene0404_00'\]"):
        plan_mine_units(b.mine)

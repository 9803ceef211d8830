"""A corpus with one bad scene, end to end through the CLI and Prefect: fail before any unit,
skip it and build the rest, then drop it from the config and re-use every finished unit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scene_files import lfs_pointer
from test_corpus import shard_hashes
from conftest import prefect_client_env as _env

pytestmark = pytest.mark.slow

CONFIG = """run_dir = "run"
[corpus]
seed = 2
pairs_per_scene = 2
pairs_per_shard = 1
workers = 1
on_scene_error = "{policy}"
[corpus.scenes]
uris = [{uris}]
[corpus.sampler]
width = 48
height = 48
screen_size = 0
min_covis = 0.3
"""


def _write(folder: Path, policy: str, uris: list[str]) -> Path:
    path = folder / "run.toml"
    path.write_text(CONFIG.format(policy=policy, uris=", ".join(json.dumps(u) for u in uris)))
    return path


def _cli(*args: str, api_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=_env(api_url), capture_output=True,
                          text=True, timeout=900)


def test_one_bad_scene_fails_fast_or_is_skipped_and_removing_it_reuses_every_unit(tmp_path, prefect_server):
    api_url, _ = prefect_server
    lfs_pointer(tmp_path / "broken.glb")
    uris = ["procedural:1", "broken.glb", "procedural:2"]
    config = _write(tmp_path, "fail", uris)

    checked = _cli("scenes", str(config), api_url=api_url)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "Git LFS pointer" in checked.stderr and "proc-000001" in checked.stdout
    assert (tmp_path / "run" / "scenes" / "check.md").is_file()

    failed = _cli("generate", str(config), api_url=api_url)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "1 of 3 scene(s) cannot be used" in failed.stderr and "broken: " in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not list((tmp_path / "run").glob("corpus/units/*.parquet"))  # no unit ran
    assert not list((tmp_path / "run").glob("corpus/shards/*/*.tar"))

    config = _write(tmp_path, "skip", uris)
    skipped = _cli("generate", str(config), api_url=api_url)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    corpus = tmp_path / "run" / "corpus"
    info = json.loads((corpus / "corpus.json").read_text())
    assert [s["scene_id"] for s in info["skipped_scenes"]] == ["broken"]
    assert "Git LFS pointer" in info["skipped_scenes"][0]["reason"]
    assert "## Skipped scenes (1" in (corpus / "card" / "stats.md").read_text()
    assert info["counts"]["units"] == 4
    before = shard_hashes(corpus)
    mtimes = {p: p.stat().st_mtime_ns for p in corpus.glob("shards/*/*.tar")}

    config = _write(tmp_path, "fail", ["procedural:1", "procedural:2"])
    again = _cli("generate", str(config), api_url=api_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(4 units reused" in again.stdout
    assert shard_hashes(corpus) == before
    assert {p: p.stat().st_mtime_ns for p in corpus.glob("shards/*/*.tar")} == mtimes  # not re-rendered
    assert json.loads((corpus / "corpus.json").read_text())["skipped_scenes"] == []

"""verify checks units/ too; repair deletes exactly the damage and the next generation ends
byte-identical to the clean corpus (plain functions; the CLI's `generate --repair` once, slow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import prefect_client_env
from pipeline.config import load_run_config
from pipeline.corpus import plan_units, verify_corpus
from pipeline.corpus.repair import repair_corpus
from test_corpus import build_corpus, write_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A finished corpus's run folder (holding run.toml and run/corpus)."""
    folder = tmp_path_factory.mktemp("clean")
    config = write_config(folder)
    rooms = folder / "rooms"  # absolute scene paths: a copy of the folder is then the same corpus config
    config.write_text(config.read_text().replace('"rooms/', f'"{rooms}/'))
    build_corpus(config)
    return folder


def _snapshot(corpus: Path) -> dict[str, bytes]:
    return {p.relative_to(corpus).as_posix(): p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file()}


def _flip_shard_byte(c: Path) -> None:
    shard = c / "shards/train/pairs-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01
    shard.write_bytes(bytes(data))


def _rewrite_manifest(c: Path, change) -> None:
    table = pq.read_table(c / "manifest.parquet")
    pq.write_table(pa.Table.from_pylist(change(table.to_pylist()), schema=table.schema), c / "manifest.parquet")


def _orphan_row(rows: list[dict]) -> list[dict]:
    return rows + [dict(rows[0], key=rows[0]["key"][:-8] + "00000099", pair_index=99)]


def _first_unit(c: Path) -> Path:
    return sorted((c / "units").glob("*.parquet"))[0]


DAMAGE = {
    "flipped shard byte": (_flip_shard_byte, "shards/train/pairs-000001.tar: sha256"),
    "missing shard": (lambda c: (c / "shards/val/pairs-000000.tar").unlink(), "missing shard shards/val/pairs-000000.tar"),
    "unlisted shard": (lambda c: shutil.copy(c / "shards/train/pairs-000000.tar", c / "shards/train/pairs-000042.tar"),
                       "shard shards/train/pairs-000042.tar is not listed in corpus.json"),
    "orphan manifest row": (lambda c: _rewrite_manifest(c, _orphan_row), "has no sample in shards/"),
    "duplicate manifest row": (lambda c: _rewrite_manifest(c, lambda rows: rows + rows[:1]), "appears more than once"),
    "missing unit file": (lambda c: _first_unit(c).unlink(), "missing unit file units/"),
    "damaged unit file": (lambda c: _first_unit(c).write_bytes(_first_unit(c).read_bytes()[:100]),
                          "is unreadable or has no unit summary"),
    "foreign unit file": (lambda c: shutil.copy(_first_unit(c), c / "units" / "old-unit.parquet"),
                          "unit file units/old-unit.parquet is not part of corpus.json"),
    "leftover temporary": (lambda c: (c / "shards/train/.pairs-000003.tar.4242.tmp").write_bytes(b"partial"),
                           "leftover temporary file shards/train/.pairs-000003.tar.4242.tmp"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_repair_fixes_each_damage_to_byte_identical(clean, tmp_path, kind):
    damage, message = DAMAGE[kind]
    shutil.copytree(clean, tmp_path / "f")
    corpus = tmp_path / "f" / "run" / "corpus"
    damage(corpus)
    report = verify_corpus(corpus)
    assert not report.ok and any(message in p for p in report.problems), report.summary()
    assert not any(str(tmp_path) in p for p in report.problems)  # paths relative to the corpus
    run = load_run_config(tmp_path / "f" / "run.toml")
    repair_corpus(corpus, report, plan_units(run.corpus))
    build_corpus(tmp_path / "f" / "run.toml")
    assert _snapshot(corpus) == _snapshot(clean / "run" / "corpus")
    assert verify_corpus(corpus).ok


def test_repair_renders_only_the_damaged_unit(clean, tmp_path):
    shutil.copytree(clean, tmp_path / "f")
    corpus = tmp_path / "f" / "run" / "corpus"
    _flip_shard_byte(corpus)
    report = verify_corpus(corpus)
    run = load_run_config(tmp_path / "f" / "run.toml")
    units = plan_units(run.corpus)
    damaged = [u for u in units if u.shard_relpath == "shards/train/pairs-000001.tar"]
    assert report.damaged_units == {damaged[0].unit_id} and not report.stray_files
    removed = repair_corpus(corpus, report, units)
    assert set(removed) == {damaged[0].shard_relpath, damaged[0].unit_relpath, "manifest.parquet", "corpus.json"}
    assert repair_corpus(corpus, verify_corpus(clean / "run" / "corpus"), units) == []  # nothing when OK


@pytest.mark.slow
def test_generate_repair_command(clean, tmp_path, prefect_server):
    shutil.copytree(clean, tmp_path / "f")
    corpus = tmp_path / "f" / "run" / "corpus"
    env = {k: v for k, v in prefect_client_env(prefect_server[0]).items() if not k.startswith("CROCOPIPE_")}
    env.update(PYTHONPATH=str(REPO))
    DAMAGE["flipped shard byte"][0](corpus)
    plain = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "run.toml"], cwd=tmp_path / "f", env=env,
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and "already complete" in plain.stdout  # sizes match: only verify sees it
    for kind in ("missing unit file", "duplicate manifest row", "leftover temporary"):
        DAMAGE[kind][0](corpus)
    fixed = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "run.toml", "--repair"],
                           cwd=tmp_path / "f", env=env, capture_output=True, text=True, timeout=600)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "repair: removed" in fixed.stdout and "re-rendering" in fixed.stdout, fixed.stdout
    assert _snapshot(corpus) == _snapshot(clean / "run" / "corpus")
    again = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "run.toml", "--repair"],
                           cwd=tmp_path / "f", env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to repair" in again.stdout, again.stdout + again.stderr

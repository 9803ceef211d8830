"""Check a finished corpus end to end and say exactly what is wrong, and what to redo.

Every shard listed in corpus.json must exist with the recorded size and sha256 and decode under
the sample schema; no unlisted shard may sit in shards/; every listed shard must have its unit
file (units/<unit-id>.parquet) recording the same shard, hash and rows, and no unit file may be
foreign to corpus.json (except in a regenerated corpus, which has no units); every manifest row must have its sample in the shard it names (with the
same metadata) and every sample must have its row; no temporary file of a killed run may be left.

Besides the readable problems, the report says what repairs them (pipeline.corpus.repair):
which units to render again, which stray files to delete, whether to merge the manifest again.
Paths in the report are relative to the corpus folder.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.corpus.build import CORPUS_FILE
from pipeline.corpus.manifest import LOCATION_COLUMNS, ManifestError, flatten_meta, read_manifest, read_unit_summary
from rendering.layout import CorpusLayout
from rendering.atomic import temporary_files
from rendering.shards import ShardReadError, file_sha256, read_shard


@dataclass
class VerifyReport:
    corpus_dir: Path
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    samples_checked: int = 0
    manifest_rows: int = 0
    units_checked: int = 0
    damaged_units: set[str] = field(default_factory=set)  # unit ids whose shard and unit file are redone
    stray_files: set[str] = field(default_factory=set)  # corpus-relative paths that belong to no unit
    merge_damaged: bool = False  # manifest.parquet / corpus.json must be merged again from the units

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (
            f"{self.corpus_dir}: {self.shards_checked} shards, {self.units_checked} unit files, "
            f"{self.samples_checked} samples, {self.manifest_rows} manifest rows: "
        )
        if self.ok:
            return head + "OK"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems)


def verify_corpus(corpus_dir: Path) -> VerifyReport:
    corpus_dir = Path(corpus_dir)
    report = VerifyReport(corpus_dir)
    _check(corpus_dir, report)
    for path in temporary_files(corpus_dir):
        rel = path.relative_to(corpus_dir).as_posix()
        report.stray_files.add(rel)
        report.problems.append(f"leftover temporary file {rel} (from a killed run; the next `crocopipe generate` "
                               "removes it)")
    prefix = f"{corpus_dir}/"
    report.problems = [p.replace(prefix, "") for p in report.problems]
    return report


def _check(corpus_dir: Path, report: VerifyReport) -> None:
    layout = CorpusLayout(corpus_dir)
    try:
        info = json.loads(layout.info.read_text())
        listed = info["shards"]
    except FileNotFoundError:
        report.problems.append(f"{CORPUS_FILE} does not exist (is this a finished corpus?)")
        report.merge_damaged = True
        return
    except (OSError, ValueError, KeyError, TypeError) as err:
        report.problems.append(f"{CORPUS_FILE} is unreadable: {err}")
        report.merge_damaged = True
        return
    try:
        rows = read_manifest(layout.manifest).to_pylist()
    except ManifestError as err:
        report.problems.append(str(err))
        report.merge_damaged = True
        rows = None  # the shards and units are still checked
    report.manifest_rows = len(rows or [])

    samples = _check_shards(corpus_dir, listed, report)
    has_units = "regenerated_from" not in info  # `regenerate` writes a corpus in one piece, without units/
    unit_keys = _check_units(layout, listed, report) if has_units else {}
    if rows is not None:
        _check_manifest(rows, listed, samples, report)
        if has_units:
            _check_units_against_manifest(rows, listed, unit_keys, report)
        total = info.get("counts", {}).get("pairs_total")
        if total is not None and total != len(rows):
            report.problems.append(f"corpus.json counts {total} pairs, the manifest has {len(rows)} rows")
            report.merge_damaged = True


def _check_shards(corpus_dir: Path, listed: list[dict], report: VerifyReport) -> dict[str, dict[str, dict]]:
    """Presence, size, hash, decodability of every listed shard; returns their samples' metadata."""
    samples: dict[str, dict[str, dict]] = {}
    for entry in listed:
        rel, unit_id = entry["path"], entry.get("unit_id")
        path = corpus_dir / rel
        problems_before = len(report.problems)
        if not path.is_file():
            report.problems.append(f"missing shard {rel}")
            report.damaged_units.add(unit_id)
            continue
        report.shards_checked += 1
        size = path.stat().st_size
        if size != entry["size"]:
            report.problems.append(f"shard {rel}: size {size} bytes, corpus.json records {entry['size']}")
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            report.problems.append(f"shard {rel}: sha256 {digest[:16]}... does not match corpus.json's {entry['sha256'][:16]}...")
        metas: dict[str, dict] = {}
        readable = True
        try:
            for sample in read_shard(path):
                metas[sample["__key__"]] = sample["meta"]
        except ShardReadError as err:
            report.problems.append(str(err))
            readable = False
        samples[rel] = metas
        report.samples_checked += len(metas)
        if readable and len(metas) != entry["samples"]:
            report.problems.append(f"shard {rel}: {len(metas)} readable samples, corpus.json records {entry['samples']}")
        if len(report.problems) > problems_before:
            report.damaged_units.add(unit_id)
    listed_paths = {entry["path"] for entry in listed}
    for path in CorpusLayout(corpus_dir).all_shards():
        rel = path.relative_to(corpus_dir).as_posix()
        if rel not in listed_paths:
            report.problems.append(f"shard {rel} is not listed in corpus.json")
            report.stray_files.add(rel)
    return samples


def _check_units(layout: CorpusLayout, listed: list[dict], report: VerifyReport) -> dict[str, list[str]]:
    """Every listed shard's unit file records that shard; returns each unit's sample keys."""
    keys: dict[str, list[str]] = {}
    for entry in listed:
        unit_id, rel = entry.get("unit_id"), entry["path"]
        unit_rel = f"{layout.units_dir.name}/{unit_id}.parquet"
        path = layout.root / unit_rel
        if not path.is_file():
            report.problems.append(f"missing unit file {unit_rel} (of shard {rel})")
            report.damaged_units.add(unit_id)
            continue
        report.units_checked += 1
        summary = read_unit_summary(path)
        if summary is None:
            report.problems.append(f"unit file {unit_rel} is unreadable or has no unit summary")
            report.damaged_units.add(unit_id)
            continue
        recorded = {"shard": rel, "shard_sha256": entry["sha256"], "shard_size": entry["size"],
                    "pairs_written": entry["samples"]}
        differing = sorted(k for k, v in recorded.items() if summary.get(k) != v)
        if differing:
            report.problems.append(f"unit file {unit_rel} differs from corpus.json in {differing}")
            report.damaged_units.add(unit_id)
            continue
        try:
            keys[unit_id] = pq.read_table(path, columns=["key"]).column("key").to_pylist() if entry["samples"] else []
        except (OSError, ValueError, KeyError) as err:
            report.problems.append(f"unit file {unit_rel}: rows unreadable ({err})")
            report.damaged_units.add(unit_id)
    listed_units = {f"{entry.get('unit_id')}.parquet" for entry in listed}
    if layout.units_dir.is_dir():
        for path in sorted(layout.units_dir.glob("*.parquet")):
            if path.name not in listed_units:
                rel = path.relative_to(layout.root).as_posix()
                report.problems.append(f"unit file {rel} is not part of corpus.json")
                report.stray_files.add(rel)
    return keys


def _check_manifest(rows: list[dict], listed: list[dict], samples: dict[str, dict[str, dict]],
                    report: VerifyReport) -> None:
    """Manifest rows <-> shard samples, both ways."""
    shard_hash = {entry["path"]: entry["sha256"] for entry in listed}
    problems_before = len(report.problems)
    seen_keys: set[str] = set()
    rows_by_shard: dict[str, set[str]] = defaultdict(set)
    for i, row in enumerate(rows):
        key, rel = row["key"], row["shard"]
        if key in seen_keys:
            report.problems.append(f"manifest row {i}: key {key!r} appears more than once")
        seen_keys.add(key)
        rows_by_shard[rel].add(key)
        if rel not in shard_hash:
            report.problems.append(f"manifest row {i} ({key}): shard {rel!r} is not listed in corpus.json")
            continue
        if row.get("shard_sha256") != shard_hash[rel]:
            report.problems.append(f"manifest row {i} ({key}): shard_sha256 differs from corpus.json's for {rel}")
        if rel not in samples:
            continue  # the missing shard is already reported
        meta = samples[rel].get(key)
        if meta is None:
            report.problems.append(f"manifest row {i} ({key}) has no sample in {rel}")
            continue
        expected = flatten_meta(meta)
        differing = sorted(
            name for name in set(expected) | (set(row) - set(LOCATION_COLUMNS)) if row.get(name) != expected.get(name)
        )
        if differing:
            report.problems.append(f"manifest row {i} ({key}) differs from its sample's meta.json in {differing}")
    for rel, metas in samples.items():
        for key in sorted(set(metas) - rows_by_shard.get(rel, set())):
            report.problems.append(f"sample {key} in {rel} has no manifest row")
    if len(report.problems) > problems_before:
        report.merge_damaged = True


def _check_units_against_manifest(rows: list[dict], listed: list[dict], unit_keys: dict[str, list[str]],
                                  report: VerifyReport) -> None:
    """Each readable unit file holds exactly the manifest's rows of its shard."""
    manifest_keys: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        manifest_keys[row["shard"]].append(row["key"])
    for entry in listed:
        unit_id = entry.get("unit_id")
        if unit_id in unit_keys and sorted(unit_keys[unit_id]) != sorted(manifest_keys.get(entry["path"], [])):
            report.problems.append(f"unit file units/{unit_id}.parquet and the manifest list different rows "
                                   f"for shard {entry['path']}")
            report.merge_damaged = True

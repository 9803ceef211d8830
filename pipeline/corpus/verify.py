"""Check a finished corpus end to end and say exactly what is wrong.

Every shard listed in corpus.json must exist with the recorded size and sha256 and decode under
the sample schema; no unlisted shard may sit in shards/; every manifest row must have its sample
in the shard it names (with the same metadata) and every sample must have its row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.corpus.build import CORPUS_FILE, MANIFEST_FILE
from rendering.layout import CorpusLayout
from pipeline.corpus.manifest import LOCATION_COLUMNS, ManifestError, flatten_meta, read_manifest
from rendering.shards import SHARD_GLOB, ShardReadError, file_sha256, read_shard, temporary_files


@dataclass
class VerifyReport:
    corpus_dir: Path
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    samples_checked: int = 0
    manifest_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (
            f"{self.corpus_dir}: {self.shards_checked} shards, {self.samples_checked} samples, "
            f"{self.manifest_rows} manifest rows: "
        )
        if self.ok:
            return head + "OK"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems)


def verify_corpus(corpus_dir: Path) -> VerifyReport:
    corpus_dir = Path(corpus_dir)
    report = VerifyReport(corpus_dir)
    try:
        info = json.loads((corpus_dir / CORPUS_FILE).read_text())
        listed = info["shards"]
    except FileNotFoundError:
        report.problems.append(f"{corpus_dir / CORPUS_FILE} does not exist (is this a finished corpus?)")
        return report
    except (OSError, ValueError, KeyError, TypeError) as err:
        report.problems.append(f"{corpus_dir / CORPUS_FILE} is unreadable: {err}")
        return report
    try:
        table = read_manifest(corpus_dir / MANIFEST_FILE)
    except ManifestError as err:
        report.problems.append(str(err))
        return report
    rows = table.to_pylist()
    report.manifest_rows = len(rows)

    # Shards: presence, size, hash, decodability; collect their samples' metadata.
    samples: dict[str, dict[str, dict]] = {}
    shard_hash: dict[str, str] = {}
    for entry in listed:
        rel = entry["path"]
        path = corpus_dir / rel
        shard_hash[rel] = entry["sha256"]
        if not path.is_file():
            report.problems.append(f"missing shard {rel}")
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
    for path in CorpusLayout(corpus_dir).all_shards():
        rel = path.relative_to(corpus_dir).as_posix()
        if rel not in shard_hash:
            report.problems.append(f"shard {rel} is not listed in corpus.json")

    # Manifest <-> samples, both ways.
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
    total = info.get("counts", {}).get("pairs_total")
    if total is not None and total != len(rows):
        report.problems.append(f"corpus.json counts {total} pairs, the manifest has {len(rows)} rows")
    for path in temporary_files(corpus_dir):
        report.problems.append(f"leftover temporary file {path.relative_to(corpus_dir).as_posix()} "
                               "(from a killed run; the next `crocopipe generate` removes it)")
    return report


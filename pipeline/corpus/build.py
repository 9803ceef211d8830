"""Corpus-level steps around the units: prepare the folder, merge units, write corpus.json.

``prepare_corpus_dir`` refuses a folder that holds a corpus of another config (nothing is ever
overwritten) and clears temporary files a killed run left behind; ``merge_corpus`` turns complete
units into manifest.parquet, corpus.json and the dataset card.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.config import CorpusConfig, code_version, corpus_id
from pipeline.corpus.manifest import merge_tables, write_parquet_atomic
from pipeline.corpus.plan import SPLITS, WorkUnit
from pipeline.corpus.unit import completed_unit
from rendering.layout import CORPUS_FILE, MANIFEST_FILE, PLAN_FILE, CorpusLayout  # noqa: F401  (re-exported)
from rendering.pair import SCHEMA_VERSION
from rendering.atomic import atomic_write_bytes, remove_temporary_files


class CorpusStateError(RuntimeError):
    """The corpus folder cannot be used as it is (another config's corpus, incomplete units)."""


def dump_json(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def check_corpus_dir(corpus_dir: Path, corpus: CorpusConfig) -> None:
    """Refuse (CorpusStateError) a folder holding another config's corpus or foreign files; reads only."""
    corpus_dir = Path(corpus_dir)
    plan_path = corpus_dir / PLAN_FILE
    config_hash = corpus.content_hash()
    if plan_path.exists():
        try:
            previous_hash = json.loads(plan_path.read_text())["config_hash"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorpusStateError(f"{plan_path} is unreadable ({err}); move the folder away to start afresh") from None
        if previous_hash != config_hash:
            raise CorpusStateError(
                f"{corpus_dir} holds a corpus generated from a different [corpus] config "
                f"(config hash {previous_hash[:12]} there, {config_hash[:12]} now); nothing was changed. "
                "Use another run_dir, or restore the config that made it to resume."
            )
    elif corpus_dir.exists() and any(corpus_dir.iterdir()):
        raise CorpusStateError(f"{corpus_dir} is not empty and holds no {PLAN_FILE}; refusing to write into it")


def prepare_corpus_dir(corpus_dir: Path, corpus: CorpusConfig, units: list[WorkUnit]) -> None:
    """Create the folder (or accept an earlier run's of the same config) and record the plan."""
    corpus_dir = Path(corpus_dir)
    check_corpus_dir(corpus_dir, corpus)
    plan_path = corpus_dir / PLAN_FILE
    config_hash = corpus.content_hash()
    layout = CorpusLayout(corpus_dir)
    for folder in [corpus_dir, layout.units_dir, layout.card_dir, *(layout.shards_dir(s) for s in SPLITS)]:
        folder.mkdir(parents=True, exist_ok=True)
    remove_temporary_files(corpus_dir)  # written by a run that was killed; we hold the run lock
    plan = {
        "config_hash": config_hash,
        "code_version": code_version(),
        "config": corpus.content_dict(),
        "units": [u.as_dict() for u in units],
    }
    atomic_write_bytes(plan_path, dump_json(plan))


def finished_corpus(corpus_dir: Path, corpus: CorpusConfig, units: list[WorkUnit]) -> dict | None:
    """corpus.json when the folder holds this config's finished corpus (every unit present with its
    recorded size, manifest and card written), else None. Cheap: sizes, not hashes (see verify)."""
    corpus_dir = Path(corpus_dir)
    try:
        info = json.loads((corpus_dir / CORPUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if info.get("config_hash") != corpus.content_hash() or not (corpus_dir / MANIFEST_FILE).is_file():
        return None
    recorded = {s.get("unit_id"): s for s in info.get("shards", [])}
    for unit in units:
        summary = completed_unit(unit, corpus_dir, info["config_hash"], check_hash=False)
        entry = recorded.get(unit.unit_id)
        if summary is None or entry is None or entry.get("sha256") != summary["shard_sha256"]:
            return None
    if len(recorded) != len(units) or not (CorpusLayout(corpus_dir).card_dir / "stats.md").is_file():
        return None
    return info


def corpus_thresholds(corpus: CorpusConfig) -> dict:
    """The sampler's acceptance thresholds (co-visibility, valid depth, attempt limits)."""
    sampler = corpus.sampler.model_dump(mode="json")
    words = ("covis", "valid", "attempt", "min_", "max_")
    return {k: v for k, v in sampler.items() if any(w in k for w in words)}


def merge_corpus(corpus_dir: Path, corpus: CorpusConfig, units: list[WorkUnit], make_card: bool = True) -> dict:
    """Merge complete units into manifest.parquet and corpus.json (and the card); returns counts."""
    corpus_dir = Path(corpus_dir)
    config_hash = corpus.content_hash()
    summaries = []
    missing = []
    for unit in units:
        summary = completed_unit(unit, corpus_dir, config_hash, check_hash=False)
        if summary is None:
            missing.append(unit.unit_id)
        else:
            summaries.append(summary)
    if missing:
        raise CorpusStateError(f"{len(missing)} unit(s) are not complete, cannot merge: {missing[:10]}")
    table = merge_tables([corpus_dir / u.unit_relpath for u in units])
    write_parquet_atomic(table, corpus_dir / MANIFEST_FILE)

    rejections: Counter[str] = Counter()
    for s in summaries:
        rejections.update(s["rejections"])
    pairs = Counter(s["split"] for s in summaries for _ in range(s["pairs_written"]))
    scenes = {split: sorted({u.scene_id for u in units if u.split == split}) for split in SPLITS}
    info = {
        "corpus_id": corpus_id(corpus),
        "config_hash": config_hash,
        "code_version": code_version(),
        "schema_version": SCHEMA_VERSION,
        "config": corpus.model_dump(mode="json"),
        "thresholds": corpus_thresholds(corpus),
        "counts": {
            "pairs": {split: pairs.get(split, 0) for split in SPLITS},
            "pairs_total": sum(pairs.values()),
            "pairs_requested": sum(s["pairs_requested"] for s in summaries),
            "failed_pairs": sum(len(s["failed_pairs"]) for s in summaries),
            "scenes": {split: len(ids) for split, ids in scenes.items()},
            "units": len(units),
            "shards": len(units),
            "attempts": sum(s["attempts"] for s in summaries),
        },
        "scenes": scenes,
        "rejections": dict(sorted(rejections.items())),
        "failed_pairs": [dict(f, unit_id=s["unit_id"]) for s in summaries for f in s["failed_pairs"]],
        "shards": [
            {
                "path": s["shard"],
                "split": s["split"],
                "unit_id": s["unit_id"],
                "samples": s["pairs_written"],
                "size": s["shard_size"],
                "sha256": s["shard_sha256"],
            }
            for s in summaries
        ],
        "manifest": MANIFEST_FILE,
    }
    atomic_write_bytes(corpus_dir / CORPUS_FILE, dump_json(info))
    if make_card:
        from pipeline.corpus.card import write_card

        write_card(corpus_dir, info, table)
    return info

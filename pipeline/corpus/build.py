"""Corpus-level steps around the units: prepare the folder, merge units, write corpus.json.

``prepare_corpus_dir`` refuses a folder that holds a corpus of another config (nothing is ever
overwritten) and clears temporary files a killed run left behind; ``merge_corpus`` turns complete
units into manifest.parquet, corpus.json and the dataset card.
"""

from __future__ import annotations

import json
import os
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


def _identity(corpus) -> tuple[str, str, str]:
    """(plan.json field, value, what it covers) deciding whether a folder may be resumed: for a
    rendered corpus the unit-shaping settings and generation code (scenes may change), for other
    corpora (mined) the whole content hash."""
    if isinstance(corpus, CorpusConfig):
        from pipeline.corpus.identity import units_hash

        return "units_hash", units_hash(corpus), "its unit-shaping settings (seed, pairs_per_shard, image " \
            "encoding, depth_scale, backend, sampler) or the generation code differ"
    return "config_hash", corpus.content_hash(), "its content differs"


def check_corpus_dir(corpus_dir: Path, corpus: CorpusConfig) -> None:
    """Refuse (CorpusStateError) a folder holding a corpus whose existing units this config would
    change, or foreign files; reads only."""
    corpus_dir = Path(corpus_dir)
    plan_path = corpus_dir / PLAN_FILE
    field, current, covers = _identity(corpus)
    if plan_path.exists():
        try:
            plan = json.loads(plan_path.read_text())
            previous = plan[field] if field in plan else plan["config_hash"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorpusStateError(f"{plan_path} is unreadable ({err}); move the folder away to start afresh") from None
        if field not in plan:  # a plan written before units had content keys: the old rule
            field, current, covers = "config_hash", corpus.content_hash(), "its content differs"
        if previous != current:
            raise CorpusStateError(
                f"{corpus_dir} holds a corpus generated from a different [corpus] config: {covers} "
                f"({field} {previous[:12]} there, {current[:12]} now); nothing was changed. "
                "Use another run_dir, or restore the settings that made it to resume."
            )
    elif corpus_dir.exists() and any(corpus_dir.iterdir()):
        raise CorpusStateError(f"{corpus_dir} is not empty and holds no {PLAN_FILE}; refusing to write into it")


def prepare_corpus_dir(corpus_dir: Path, corpus: CorpusConfig, units: list[WorkUnit]) -> list[str]:
    """Create the folder (or accept an earlier run's), record the plan, and move the units that are
    no longer planned (their scene was removed, or moved to the other split) with their shards to
    ``retired/``: nothing is deleted, and shards/ holds only planned units. Returns the retired
    unit ids."""
    corpus_dir = Path(corpus_dir)
    check_corpus_dir(corpus_dir, corpus)
    plan_path = corpus_dir / PLAN_FILE
    layout = CorpusLayout(corpus_dir)
    for folder in [corpus_dir, layout.units_dir, layout.card_dir, *(layout.shards_dir(s) for s in SPLITS)]:
        folder.mkdir(parents=True, exist_ok=True)
    remove_temporary_files(corpus_dir)  # written by a run that was killed; we hold the run lock
    retired = _retire_unplanned(corpus_dir, units) if isinstance(corpus, CorpusConfig) else []
    field, value, _ = _identity(corpus)
    plan = {
        "config_hash": corpus.content_hash(),
        field: value,
        "code_version": code_version(),
        "config": corpus.content_dict(),
        "units": [u.as_dict() for u in units],
    }
    atomic_write_bytes(plan_path, dump_json(plan))
    return retired


RETIRED_DIR = "retired"


def _retire_unplanned(corpus_dir: Path, units: list[WorkUnit]) -> list[str]:
    """Move unit manifests (and the shards they name) that no planned unit claims to retired/."""
    from pipeline.corpus.manifest import read_unit_summary

    planned = {(u.unit_id, u.unit_key, u.shard_relpath) for u in units}
    retired = []
    for manifest in sorted((corpus_dir / "units").glob("*.parquet")):
        summary = read_unit_summary(manifest) or {}
        claim = (summary.get("unit_id"), summary.get("unit_key", ""), summary.get("shard"))
        if claim in planned:
            continue
        stamp = f"{summary.get('unit_key', '')[:8] or 'old'}"
        shard = summary.get("shard")
        if shard and (corpus_dir / shard).is_file():  # plan paths are unique: no kept unit names it
            target = corpus_dir / RETIRED_DIR / f"{Path(shard).parent.as_posix()}" / f"{Path(shard).stem}-{stamp}.tar"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(corpus_dir / shard, target)
        target = corpus_dir / RETIRED_DIR / "units" / f"{manifest.stem}-{stamp}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(manifest, target)
        retired.append(str(summary.get("unit_id", manifest.stem)))
    return retired


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
    skipped = {s.get("scene_id") for s in info.get("skipped_scenes", [])}  # refused by the scene check
    units = [u for u in units if u.scene_id not in skipped]
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


def merge_corpus(corpus_dir: Path, corpus: CorpusConfig, units: list[WorkUnit], make_card: bool = True,
                 skipped: list[dict] | None = None) -> dict:
    """Merge complete units into manifest.parquet and corpus.json (and the card); returns counts.
    ``skipped``: scenes the scene check refused (``on_scene_error = "skip"``), with the reason."""
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
        "skipped_scenes": list(skipped or []),
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

"""Mined corpora as plain functions: plan one unit per capture sequence, mine it, merge.

A unit reads its sequence (rendering.captures), mines pairs (rendering.mining), writes them to
one shard in the shard schema plus its unit manifest, exactly like a rendered unit, so resume,
verify, the manifest, the card and training treat both corpora alike. Each pair's meta.json
also carries ``source`` (dataset, sequence, frame ids, timestamps) and the crop windows;
``pairs.parquet`` lists every pair by those fields so others can rebuild it from their own copy
of the raw data.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa

from pipeline.config import code_version
from pipeline.corpus.build import CORPUS_FILE, MANIFEST_FILE, CorpusStateError, dump_json
from pipeline.corpus.manifest import manifest_row, merge_tables, rows_to_table, write_parquet_atomic
from pipeline.corpus.plan import SPLITS, CorpusPlanError, assign_splits
from pipeline.corpus.unit import completed_unit
from pipeline.mine_config import MineConfig
from rendering.pair import SCHEMA_VERSION, sample_key, scene_slug
from rendering.shards import META_FIELD, SHARD_PATTERN, ShardWriter, atomic_write_bytes, encode_meta, encode_sample

PAIRS_FILE = "pairs.parquet"
# Columns of pairs.parquet, the shareable pair list (matrices row-major, flat).
PAIR_COLUMNS = ("key", "split", "dataset", "sequence", "frame_id1", "frame_id2", "timestamp1", "timestamp2",
                "covis", "covis_1to2", "covis_2to1", "covis_1to2_valid", "covis_2to1_valid", "crop1", "crop2",
                "source_width", "source_height", "width", "height", "K1", "K2", "cam2world1", "cam2world2",
                "frustum_estimate")


@dataclass(frozen=True)
class MineUnit:
    """One capture sequence, mined into one shard and one unit manifest."""

    unit_id: str
    split: str
    shard_index: int
    scene_id: str
    kind: str
    root: str
    options: dict = field(default_factory=dict)

    @property
    def shard_relpath(self) -> str:
        return f"shards/{self.split}/{SHARD_PATTERN % self.shard_index}"

    @property
    def unit_relpath(self) -> str:
        return f"units/{self.unit_id}.parquet"

    def as_dict(self) -> dict:
        return asdict(self)


def sequence_scene_id(kind: str, folder: Path) -> str:
    """Same id as rendering.captures.materialise.sequence_scene_id gives the read sequence."""
    return scene_slug(f"{kind}-{Path(folder).name.removesuffix('_frames')}")


def plan_mine_units(mine: MineConfig) -> list[MineUnit]:
    """Every sequence of every source, with its split and shard, decided before any work."""
    from rendering.captures import CaptureError, discover_sequences

    found: list[tuple[str, Path, dict]] = []
    for index, source in enumerate(mine.sources):
        where = f"mine.sources[{index}]"
        try:
            folders = discover_sequences(source.kind, source.root)
        except CaptureError as err:
            raise CorpusPlanError(f"{where}: {err}") from None
        if source.sequences is not None:
            names = {f.name for f in folders}
            unknown = sorted(set(source.sequences) - names)
            if unknown:
                raise CorpusPlanError(f"{where}.sequences: no {source.kind} sequence named {unknown} under "
                                      f"{source.root} (found {sorted(names)[:10]})")
            folders = [f for f in folders if f.name in source.sequences]
        found += [(source.kind, f, source.reader_options()) for f in folders[: source.limit]]
    seen: dict[str, Path] = {}
    for kind, folder, _ in found:
        scene_id = sequence_scene_id(kind, folder)
        if scene_id in seen:
            raise CorpusPlanError(f"two sequences get the id {scene_id!r} ({seen[scene_id]} and {folder}); "
                                  "list each folder once")
        seen[scene_id] = folder
    ids = list(seen)
    if mine.pairs is not None:
        listed = read_pair_list(mine.pairs)
        have = {(_DATASET_OF_KIND[kind], folder.name.removesuffix("_frames")) for kind, folder, _ in found}
        absent = sorted(set(listed) - have)
        if absent:
            raise CorpusPlanError(f"mine.pairs: {mine.pairs} lists pairs of {len(absent)} sequence(s) that no "
                                  f"mine.sources entry provides: {[f'{d}/{q}' for d, q in absent[:10]]}")
    split_view = SimpleNamespace(val_scenes=mine.val_sequences, val_fraction=mine.val_fraction, seed=mine.seed)
    try:
        splits = assign_splits(ids, split_view)
    except CorpusPlanError as err:
        raise CorpusPlanError(str(err).replace("corpus.val_scenes", "mine.val_sequences")) from None
    next_shard = {s: 0 for s in SPLITS}
    units = []
    for (kind, folder, options), scene_id in zip(found, ids):
        split = splits[scene_id]
        units.append(MineUnit(scene_id, split, next_shard[split], scene_id, kind, str(folder), options))
        next_shard[split] += 1
    return units


_DATASET_OF_KIND = {"scannet": "scannet", "arkitscenes": "arkitscenes", "tum": "tum", "frames": "frames"}


class PairListError(ValueError):
    """A published pair list cannot be read or does not match the raw data it is rebuilt from."""


def read_pair_list(path: Path) -> dict[tuple[str, str], list[dict]]:
    """A pairs.parquet grouped by (dataset, sequence); PairListError naming the file and column."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise PairListError(f"pair list {path} is not a readable Parquet file: {err}") from None
    missing = [c for c in PAIR_COLUMNS if c not in table.column_names]
    if missing:
        raise PairListError(f"pair list {path} lacks the column(s) {missing}")
    grouped: dict[tuple[str, str], list[dict]] = {}
    for number, row in enumerate(table.to_pylist()):
        grouped.setdefault((row["dataset"], row["sequence"]), []).append({**row, "_row": number})
    return grouped


def listed_pairs(path: Path, sequence) -> list[tuple[int, object, tuple, tuple[int, int]]]:
    """(pair index, MinedPair, crop windows, output size) of every listed pair of ``sequence``,
    with its frames looked up by frame id in the user's own copy of the data."""
    from rendering.mining import MinedPair
    from rendering.pair import CovisScores

    rows = read_pair_list(path).get((sequence.dataset, sequence.sequence_id), [])
    index = {f.frame_id: i for i, f in enumerate(sequence.frames)}
    out = []
    for row in rows:
        where = f"pair list {path} row {row['_row']} ({row['key']})"
        ends = []
        for name in ("frame_id1", "frame_id2"):
            if row[name] not in index:
                raise PairListError(f"{where}: {name} {row[name]!r} is not a frame with a valid pose of {sequence.where}")
            ends.append(index[row[name]])
        size = sequence.frames[ends[0]].depth_size
        if (row["source_width"], row["source_height"]) != tuple(size):
            raise PairListError(f"{where}: made from {row['source_width']}x{row['source_height']} depth maps, "
                                f"{sequence.where} has {size[0]}x{size[1]}")
        covis = CovisScores(row["covis_1to2"], row["covis_2to1"], row["covis_1to2_valid"], row["covis_2to1_valid"])
        pair = MinedPair(ends[0], ends[1], covis, None, None, row["frustum_estimate"])
        out.append((int(row["key"].rsplit("-", 1)[1]), pair, (tuple(row["crop1"]), tuple(row["crop2"])),
                    (int(row["width"]), int(row["height"]))))
    return sorted(out, key=lambda item: item[0])


def run_mine_unit(unit_fields: dict, corpus_dir: str, mine_json: str, config_hash: str) -> dict:
    """Mine (or find complete) one sequence's unit; returns its summary with ``reused``."""
    from rendering.captures import read_sequence
    from rendering.captures.materialise import materialise_pair
    from rendering.mining import MiningStats, mine_sequence

    unit = MineUnit(**unit_fields)
    mine = MineConfig.model_validate_json(mine_json)
    root = Path(corpus_dir)
    done = completed_unit(unit, root, config_hash)
    if done is not None:
        return {**done, "reused": True}
    sequence = read_sequence(unit.kind, Path(unit.root), **unit.options)
    if mine.pairs is None:
        pairs, stats = mine_sequence(sequence, mine.mining, threads=mine.threads_per_worker)
        work = [(index, pair, None, mine.out_size) for index, pair in enumerate(pairs)]
    else:  # rebuild a published pair list: no mining, the listed frames, crops and sizes
        work = listed_pairs(mine.pairs, sequence)
        pairs = [pair for _, pair, _, _ in work]
        stats = MiningStats(accepted=len(pairs))
    rows = []
    with ShardWriter(root / unit.shard_relpath) as writer:
        for index, pair, windows, out_size in work:
            record, extra = materialise_pair(sequence, pair, index, mine.mining.seed, out_size, mine.crops, windows)
            key = sample_key(unit.scene_id, index)
            fields = encode_sample(record, key, mine.image_format, mine.jpeg_quality, mine.depth_scale)
            meta = record.meta(depth_scale=mine.depth_scale) | extra
            fields[META_FIELD] = encode_meta(meta)
            writer.write(key, fields)
            rows.append((key, json.loads(fields[META_FIELD])))
        info = writer.close()
    manifest_rows = [manifest_row(meta, key, unit.split, unit.shard_relpath, info.sha256, unit.unit_id)
                     for key, meta in rows]
    summary = {
        "unit_id": unit.unit_id,
        "config_hash": config_hash,
        "split": unit.split,
        "scene_id": unit.scene_id,
        "dataset": sequence.dataset,
        "sequence": sequence.sequence_id,
        "frames": len(sequence.frames),
        "frames_dropped": dict(sorted(sequence.dropped.items())),
        "shard": unit.shard_relpath,
        "shard_sha256": info.sha256,
        "shard_size": info.size,
        "pairs_requested": len(pairs),
        "pairs_written": len(rows),
        "failed_pairs": [],
        "attempts": stats.scored,
        "rejections": dict(sorted(stats.rejected.items())),
        "mining": stats.as_dict(),
        "renderer": "capture",
    }
    write_parquet_atomic(rows_to_table(manifest_rows, summary), root / unit.unit_relpath)
    return {**summary, "reused": False}


def pairs_table(manifest: pa.Table) -> pa.Table:
    """The shareable pair list: frame ids and everything needed to rebuild each pair from raw data."""
    rows = []
    for row in manifest.to_pylist():
        source = json.loads(row["source"])
        size = json.loads(row["source_size"])
        rows.append({
            "key": row["key"], "split": row["split"], "dataset": source["dataset"], "sequence": source["sequence"],
            "frame_id1": source["frame_ids"][0], "frame_id2": source["frame_ids"][1],
            "timestamp1": float(source["timestamps"][0]), "timestamp2": float(source["timestamps"][1]),
            **{k: row[k] for k in ("covis", "covis_1to2", "covis_2to1", "covis_1to2_valid", "covis_2to1_valid")},
            "crop1": json.loads(row["crop1"]), "crop2": json.loads(row["crop2"]),
            "source_width": int(size[0]), "source_height": int(size[1]), "width": row["width"], "height": row["height"],
            **{k: row[k] for k in ("K1", "K2", "cam2world1", "cam2world2")},
            "frustum_estimate": float(row["frustum_estimate"]),
        })
    schema = pa.schema([
        ("key", pa.string()), ("split", pa.string()), ("dataset", pa.string()), ("sequence", pa.string()),
        ("frame_id1", pa.string()), ("frame_id2", pa.string()), ("timestamp1", pa.float64()),
        ("timestamp2", pa.float64()), *((k, pa.float64()) for k in PAIR_COLUMNS[8:13]),
        ("crop1", pa.list_(pa.int64())), ("crop2", pa.list_(pa.int64())), ("source_width", pa.int64()),
        ("source_height", pa.int64()), ("width", pa.int64()), ("height", pa.int64()),
        *((k, pa.list_(pa.float64())) for k in ("K1", "K2", "cam2world1", "cam2world2")),
        ("frustum_estimate", pa.float64()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def merge_mined_corpus(corpus_dir: Path, mine: MineConfig, units: list[MineUnit], make_card: bool = True) -> dict:
    """manifest.parquet, pairs.parquet, corpus.json and the card from the complete units."""
    from pipeline.corpus.card import write_card

    corpus_dir = Path(corpus_dir)
    config_hash = mine.content_hash()
    summaries, missing = [], []
    for unit in units:
        summary = completed_unit(unit, corpus_dir, config_hash, check_hash=False)
        (missing.append(unit.unit_id) if summary is None else summaries.append(summary))
    if missing:
        raise CorpusStateError(f"{len(missing)} unit(s) are not complete, cannot merge: {missing[:10]}")
    table = merge_tables([corpus_dir / u.unit_relpath for u in units])
    write_parquet_atomic(table, corpus_dir / MANIFEST_FILE)
    write_parquet_atomic(pairs_table(table), corpus_dir / PAIRS_FILE)
    rejections: Counter[str] = Counter()
    for s in summaries:
        rejections.update(s["rejections"])
    pairs = Counter({split: sum(s["pairs_written"] for s in summaries if s["split"] == split) for split in SPLITS})
    scenes = {split: sorted(u.scene_id for u in units if u.split == split) for split in SPLITS}
    info = {
        "corpus_id": f"mined-{config_hash[:12]}",
        "kind": "mined",
        "config_hash": config_hash,
        "code_version": code_version(),
        "schema_version": SCHEMA_VERSION,
        "config": mine.model_dump(mode="json"),
        "thresholds": {k: v for k, v in mine.mining.model_dump().items() if "covis" in k},
        "counts": {
            "pairs": {split: pairs.get(split, 0) for split in SPLITS},
            "pairs_total": sum(pairs.values()),
            "pairs_requested": sum(s["pairs_requested"] for s in summaries),
            "failed_pairs": 0,
            "scenes": {split: len(ids) for split, ids in scenes.items()},
            "units": len(units),
            "shards": len(units),
            "attempts": sum(s["attempts"] for s in summaries),
        },
        "scenes": scenes,
        "rejections": dict(sorted(rejections.items())),
        "failed_pairs": [],
        "sequences": [{k: s[k] for k in ("unit_id", "dataset", "sequence", "frames", "frames_dropped", "mining")}
                      for s in summaries],
        "shards": [{"path": s["shard"], "split": s["split"], "unit_id": s["unit_id"], "samples": s["pairs_written"],
                    "size": s["shard_size"], "sha256": s["shard_sha256"]} for s in summaries],
        "manifest": MANIFEST_FILE,
        "pairs": PAIRS_FILE,
    }
    atomic_write_bytes(corpus_dir / CORPUS_FILE, dump_json(info))
    if make_card:
        write_card(corpus_dir, info, table)
    return info


def finished_mined_corpus(corpus_dir: Path, mine: MineConfig, units: list[MineUnit]) -> dict | None:
    """corpus.json when the folder holds this config's finished mined corpus, else None (sizes only)."""
    try:
        info = json.loads((Path(corpus_dir) / CORPUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if info.get("config_hash") != mine.content_hash() or len(info.get("shards", [])) != len(units):
        return None
    if any(completed_unit(u, Path(corpus_dir), info["config_hash"], check_hash=False) is None for u in units):
        return None
    return info

"""The shard list of a corpus split, as its manifest records it (the record of a finished corpus).

Its own module so that the loader and the mixture of corpora both read it without importing
each other.
"""

from __future__ import annotations

from pathlib import Path

from rendering.layout import CorpusLayout


class CorpusError(RuntimeError):
    """The corpus is missing, empty or unreadable."""


def list_shards(corpus_dir: str | Path, split: str = "train") -> list[str]:
    """Shard paths of one split, from the corpus manifest (one row per pair: shard, split)."""
    import pyarrow.parquet as pq

    corpus = Path(corpus_dir)
    manifest = CorpusLayout(corpus).manifest
    if not corpus.is_dir():
        raise CorpusError(f"corpus folder not found: {corpus}")
    if not manifest.is_file():
        raise CorpusError(f"no manifest.parquet in {corpus}: the corpus is missing or incomplete")
    try:
        table = pq.read_table(manifest, columns=["shard", "split"])
    except Exception as exc:
        raise CorpusError(f"cannot read {manifest} (need columns 'shard' and 'split'): {exc}") from exc
    rows = table.to_pydict()
    names = sorted({s for s, sp in zip(rows["shard"], rows["split"]) if sp == split and s})
    if not names:
        raise CorpusError(f"{manifest} lists no shards for split {split!r}")
    paths, missing = [], []
    for name in names:
        for candidate in (corpus / name, CorpusLayout(corpus).shards_dir(split) / name):
            if candidate.is_file():
                paths.append(str(candidate))
                break
        else:
            missing.append(name)
    if missing:
        raise CorpusError(f"{len(missing)} shard(s) listed in {manifest} are missing, e.g. {missing[:3]}")
    return paths

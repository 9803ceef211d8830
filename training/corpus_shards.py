"""The shard list of a corpus split, as its manifest records it (rendering.layout.CorpusLayout.split_shards).

Its own module so that the loader and the mixture of corpora both read it without importing
each other.
"""

from __future__ import annotations

from pathlib import Path

from rendering.layout import CorpusError, CorpusLayout

__all__ = ["CorpusError", "list_shards"]


def list_shards(corpus_dir: str | Path, split: str = "train") -> list[str]:
    """Shard paths of one split, from the corpus manifest (one row per pair: shard, split)."""
    return [str(path) for path in CorpusLayout(Path(corpus_dir)).split_shards(split)]

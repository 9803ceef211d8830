"""Weighted mixtures of corpora for pretraining: which corpus each sample comes from.

Every stream (rank x DataLoader worker) draws the source of each raw sample from its own
generator seeded by (seed, stream), with probability weight / sum of weights, and takes the next
sample of that source's own endless, shuffled stream. The draws depend only on the seed, the
stream and the sample index, so a resumed run replays them exactly, and the counts each rank
logs are the exact numbers of samples it took from each corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.corpus_shards import CorpusError, list_shards


@dataclass(frozen=True)
class MixtureSource:
    """A corpus's training shards and its weight in the mixture."""

    name: str
    shards: tuple[str, ...]
    weight: float


def mixture_sources(corpora, corpus_dir: str | Path, split: str) -> list[MixtureSource]:
    """The sources of a PretrainConfig's ``corpora`` (or the run's corpus alone when it is empty)."""
    if not corpora:
        return [MixtureSource("corpus", tuple(list_shards(corpus_dir, split)), 1.0)]
    sources = []
    for index, source in enumerate(corpora):
        try:
            shards = list_shards(source.path, split)
        except CorpusError as err:
            raise CorpusError(f"pretrain.corpora[{index}] ({source.label}): {err}") from None
        sources.append(MixtureSource(source.label, tuple(shards), float(source.weight)))
    return sources


def mix(streams: list[Iterator[dict]], weights: list[float], rng: np.random.Generator) -> Iterator[tuple[int, dict]]:
    """Endless (source index, sample) draws: each sample's source with probability weight / sum."""
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    cumulative = np.cumsum(p)
    while True:
        k = min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(streams) - 1)
        yield k, next(streams[k])

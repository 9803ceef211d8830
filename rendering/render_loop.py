"""The loop every pair writer shares: render a pair, key it, encode it the shard way, tally it.

Corpus units (shards), ``regenerate`` (stored poses) and ``render-pairs`` (plain files) differ only
in how a pair is rendered (sampled, or at stored poses) and where its encoded files go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rendering.backend import NavigableSpace, Renderer, SceneSpec
from rendering.pair import PairRecord, sample_key
from rendering.sampling import PairSamplingError, SamplerConfig, sample_pair
from rendering.shards import encode_sample


@dataclass(frozen=True)
class Encoding:
    """How a pair's images and depth are stored (the [corpus] image settings)."""

    image_format: str = "jpg"
    jpeg_quality: int = 95
    depth_scale: float = 0.001


@dataclass(frozen=True)
class EncodedPair:
    pair_index: int
    key: str
    record: PairRecord
    fields: dict[str, bytes]  # shard members by name, meta.json included


@dataclass(frozen=True)
class FailedPair:
    pair_index: int
    reason: str


@dataclass
class Tally:
    """What a loop produced: pairs written, pairs that found no acceptable views, candidate views."""

    written: int = 0
    failed: list[FailedPair] = field(default_factory=list)
    attempts: int = 0
    rejections: Counter = field(default_factory=Counter)

    def add(self, item: EncodedPair | FailedPair) -> None:
        if isinstance(item, FailedPair):
            self.failed.append(item)
            return
        self.written += 1
        self.attempts += item.record.attempts
        self.rejections.update(item.record.rejections)


def encode_pair(record: PairRecord, key: str, pair_index: int, encoding: Encoding) -> EncodedPair:
    fields = encode_sample(record, key, encoding.image_format, encoding.jpeg_quality, encoding.depth_scale)
    return EncodedPair(pair_index, key, record, fields)


def sampled_pairs(
    renderer: Renderer,
    navigable: NavigableSpace,
    scene: SceneSpec,
    pair_indices: Iterable[int],
    seed: int,
    sampler: SamplerConfig,
    encoding: Encoding,
    tally: Tally | None = None,
) -> Iterator[EncodedPair | FailedPair]:
    """Sample pair k of ``scene`` for each k (CroCo's sampler, seeded by (seed, scene, k)), encoded;
    a pair whose views the sampler cannot accept is yielded as a FailedPair, not raised."""
    return rendered_pairs(
        ((k, sample_key(scene.scene_id, k), lambda k=k: sample_pair(renderer, navigable, scene, k, seed, sampler))
         for k in pair_indices),
        encoding,
        tally,
    )


def rendered_pairs(
    jobs: Iterable[tuple[int, str, Callable[[], PairRecord]]],
    encoding: Encoding,
    tally: Tally | None = None,
) -> Iterator[EncodedPair | FailedPair]:
    """(pair index, key, render) jobs -> encoded pairs; PairSamplingError becomes a FailedPair."""
    for pair_index, key, render in jobs:
        try:
            item: EncodedPair | FailedPair = encode_pair(render(), key, pair_index, encoding)
        except PairSamplingError as err:
            item = FailedPair(pair_index, str(err))
        if tally is not None:
            tally.add(item)
        yield item

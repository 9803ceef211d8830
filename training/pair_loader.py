"""Pair batches for pretraining, streamed from the corpus's WebDataset shards.

Stages: shard list from manifest.parquet -> resampled shards (seeded per rank and worker, so the
stream never ends and every rank takes the same number of steps) -> tar samples -> shuffle ->
decode + independent random crop + asymmetric colour jitter per view -> batches.

Every sample's augmentation is drawn from a generator seeded by (seed, stream, sample index), so
a resumed run can skip the raw samples it already consumed and see exactly the batches an
uninterrupted run would have seen (exact as long as no sample was skipped as bad).
"""

from __future__ import annotations

import functools
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import webdataset as wds

from rendering.allocator import keep_freed_memory
from rendering.processes import die_with_parent
from rendering.shards import decode_rgb as decode_rgb_bytes
from rendering.shards import iter_raw_samples
from training.corpus_shards import CorpusError, list_shards  # noqa: F401  (re-exported)
from training.mixture import MixtureSource, mix
from training.models.croco import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

# Paper recipe: 224 crops from 256 renders; other crop sizes first rescale by the same ratio.
CROP_CONTEXT = 256 / 224
MAX_CONSECUTIVE_ERRORS = 64


@dataclass(frozen=True)
class AugmentConfig:
    crop: int
    jitter_min: float = 0.6
    jitter_max: float = 1.4
    swap_views: bool = False


_MEAN = np.array(IMAGENET_MEAN, np.float32)
_STD = np.array(IMAGENET_STD, np.float32)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    try:
        return decode_rgb_bytes(data)
    except ValueError:
        raise ValueError(f"cannot decode image {name}") from None


def shard_samples(shards: Iterator[dict], handler) -> Iterator[dict]:
    """WebDataset-style sample dicts (``__key__``, ``__url__``, one bytes value per member) from a
    stream of ``{"url": path}``, read by the project's one-pass tar reader. A shard that fails to
    read is reported to ``handler`` and the stream moves on to the next shard when it returns
    True (as webdataset's tarfile_to_samples does)."""
    for shard in shards:
        url = shard["url"]
        try:
            for key, fields in iter_raw_samples(url):
                yield {"__key__": key, "__url__": url, **fields}
        except Exception as exc:  # unreadable/corrupt shard: counted by the handler
            if not handler(exc):
                raise


def random_crop(img: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """Rescale so the short side is crop*256/224, then take a uniformly placed crop x crop window."""
    h, w = img.shape[:2]
    short = max(crop, int(round(crop * CROP_CONTEXT)))
    scale = short / min(h, w)
    if abs(scale - 1.0) > 1e-6:
        size = (max(crop, int(round(w * scale))), max(crop, int(round(h * scale))))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - crop + 1))
    x = int(rng.integers(0, w - crop + 1))
    return img[y : y + crop, x : x + crop]


def colour_jitter(img: np.ndarray, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors U[lo, hi], applied in random order (float [0,1])."""
    out = img
    for op in rng.permutation(3):
        f = np.float32(rng.uniform(lo, hi))
        if op == 0:
            out = out * f
        elif op == 1:
            mean = np.float32((out @ _GRAY).mean())
            out = (out - mean) * f + mean
        else:
            gray = (out @ _GRAY)[..., None]
            out = (out - gray) * f + gray
        out = np.clip(out, 0.0, 1.0)
    return out


def augment_view(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """uint8 HxWx3 RGB -> normalised float32 3xCxC."""
    view = random_crop(img, cfg.crop, rng).astype(np.float32) / 255.0
    view = colour_jitter(view, cfg.jitter_min, cfg.jitter_max, rng)
    return np.ascontiguousarray(((view - _MEAN) / _STD).transpose(2, 0, 1))


def _image(sample: dict, view: str) -> bytes:
    for ext in ("jpg", "png", "jpeg"):
        if f"{view}.{ext}" in sample:
            return sample[f"{view}.{ext}"]
    raise KeyError(f"sample {sample.get('__key__')!r} from {sample.get('__url__')!r} has no {view}.jpg/.png")


def make_pair(sample: dict, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    key = sample.get("__key__", "?")
    img1 = decode_rgb(_image(sample, "img1"), f"{key}.img1")
    img2 = decode_rgb(_image(sample, "img2"), f"{key}.img2")
    v1, v2 = augment_view(img1, cfg, rng), augment_view(img2, cfg, rng)
    if cfg.swap_views and rng.random() < 0.5:
        v1, v2 = v2, v1
    return v1, v2


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class PairStream(torch.utils.data.IterableDataset):
    """Endless stream of pair batches for one rank (each DataLoader worker is its own stream).

    Yields dicts: img1, img2 (B,3,C,C float), bad (samples/shards skipped since the last batch),
    source_counts (samples of the batch from each source; ``shards`` may be a list of
    training.mixture.MixtureSource for a weighted mixture, see that module).
    `skip_batches` is the number of batches this rank already consumed (resume).
    """

    def __init__(
        self,
        shards: list[str],
        aug: AugmentConfig,
        batch_size: int,
        seed: int,
        shuffle_buffer: int = 256,
        skip_batches: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not shards:
            raise CorpusError("empty shard list")
        # A plain shard list is one source; a list of MixtureSource is a weighted mixture.
        self.sources = list(shards) if isinstance(shards[0], MixtureSource) else [MixtureSource("corpus", tuple(shards), 1.0)]
        if any(not source.shards for source in self.sources):
            raise CorpusError(f"empty shard list for {[s.name for s in self.sources if not s.shards]}")
        self.shards = [shard for source in self.sources for shard in source.shards]
        self.aug = aug
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.skip_batches = skip_batches
        self.num_workers = max(1, num_workers)

    def _stream_id(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return _rank(), 0 if info is None else info.id

    def _role(self, worker: int) -> tuple[int, int]:
        """(original stream, batches it already produced) for this worker after a resume.

        The DataLoader takes batches from its workers round-robin, so batch g of a run came from
        stream g % W. A resumed loader's worker w delivers global batches skip + w + kW, i.e. it
        must continue stream (skip + w) % W after the batches that stream produced before skip.
        """
        w = self.num_workers
        role = (worker + self.skip_batches) % w
        done = 0 if self.skip_batches <= role else (self.skip_batches - role + w - 1) // w
        return role, done

    def __iter__(self) -> Iterator[dict]:
        rank, worker = self._stream_id()
        role, done_batches = self._role(worker)
        stream = rank * 1000 + role
        errors = {"n": 0, "consecutive": 0, "last": ""}

        def on_error(exc: Exception) -> bool:
            errors["n"] += 1
            errors["consecutive"] += 1
            errors["last"] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping bad shard/sample (rank %d worker %d): %s", rank, worker, errors["last"])
            if errors["consecutive"] > MAX_CONSECUTIVE_ERRORS:
                raise CorpusError(
                    f"{errors['consecutive']} consecutive bad shards/samples, last: {errors['last']}"
                ) from exc
            return True

        def source_samples(k: int) -> Iterator[dict]:
            salt = (self.seed, stream) if k == 0 else (self.seed, stream, k)  # source 0: the single-corpus stream
            shard_urls = wds.ResampledShards(list(self.sources[k].shards), seed=self.seed + 7919 * k,
                                             worker_seed=lambda: stream, deterministic=True)
            samples = shard_samples(shard_urls, on_error)
            if self.shuffle_buffer > 1:
                rng = random.Random(hash(salt) & 0xFFFFFFFF)
                samples = wds.shuffle(self.shuffle_buffer, min(100, self.shuffle_buffer), rng=rng)(samples)
            return iter(samples)

        if len(self.sources) == 1:
            drawn: Iterator[tuple[int, dict]] = ((0, sample) for sample in source_samples(0))
        else:
            drawn = mix([source_samples(k) for k in range(len(self.sources))], [s.weight for s in self.sources],
                        np.random.default_rng([self.seed, stream, 0x5EED]))
        to_skip = done_batches * self.batch_size
        index = 0
        reported = 0
        views1: list[np.ndarray] = []
        views2: list[np.ndarray] = []
        counts = [0] * len(self.sources)
        for source, sample in drawn:
            index += 1
            if index <= to_skip:
                continue
            rng = np.random.default_rng([self.seed, stream, index])
            try:
                v1, v2 = make_pair(sample, self.aug, rng)
            except Exception as exc:  # corrupt image, missing view
                on_error(exc)
                continue
            errors["consecutive"] = 0
            views1.append(v1)
            views2.append(v2)
            counts[source] += 1
            if len(views1) == self.batch_size:
                bad = errors["n"] - reported
                reported = errors["n"]
                yield {
                    "img1": torch.from_numpy(np.stack(views1)),
                    "img2": torch.from_numpy(np.stack(views2)),
                    "bad": bad,
                    "source_counts": torch.tensor(counts, dtype=torch.int64),  # samples per mixture source
                }
                views1, views2 = [], []
                counts = [0] * len(self.sources)


def _init_worker(trainer_pid: int, _worker_id: int) -> None:
    """A DataLoader worker never outlives its trainer, however the trainer dies, and keeps the
    memory of the samples it frees for the next ones (rendering.allocator: no page faults per
    sample; the process is the loader's own, so the process-wide setting touches nothing else)."""
    die_with_parent(trainer_pid)
    keep_freed_memory()


def make_loader(
    shards: list[str],
    aug: AugmentConfig,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    shuffle_buffer: int = 256,
    skip_batches: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """DataLoader of pair batches for this rank; never exhausts (the train loop counts steps).
    pin_memory (for a CUDA device) lets the host-to-device copies run asynchronously."""
    stream = PairStream(shards, aug, batch_size, seed, shuffle_buffer, skip_batches, num_workers)
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=functools.partial(_init_worker, os.getpid()) if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
    )

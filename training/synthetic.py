"""A small synthetic pair corpus in the corpus layout (shards + manifest.parquet).

For smoke tests and throughput benchmarks where no rendered corpus is at hand: each pair is two
overlapping windows of one smooth random colour field, so cross-view completion is learnable.
Depth and poses are placeholders (constant depth, identity poses); only the images matter here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rendering.layout import CorpusLayout


def _field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random RGB field: a few coloured sinusoids and blobs, uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size, 3), np.float32)
    for _ in range(6):
        fy, fx = rng.uniform(0.5, 4.0, 2)
        phase = rng.uniform(0, 2 * np.pi)
        img += np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)[..., None] * rng.uniform(-1, 1, 3)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None] * rng.uniform(-2, 2, 3)
    img = (img - img.min()) / max(float(np.ptp(img)), 1e-6)
    return (img * 255).astype(np.uint8)


def write_synthetic_corpus(
    corpus_dir: str | Path,
    shards: int = 2,
    pairs_per_shard: int = 8,
    size: int = 64,
    split: str = "train",
    seed: int = 0,
) -> list[Path]:
    """Write shards/<split>/pairs-%06d.tar and manifest.parquet (keeping the rows of the corpus's
    other splits, so a second call adds a split); returns the shard paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rendering.pair import CovisScores, PairRecord
    from rendering.shards import ShardWriter, encode_sample, shard_path

    corpus = Path(corpus_dir)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"key": [], "shard": [], "split": [], "scene_id": [], "pair_index": []}
    paths = []
    for s in range(shards):
        path = shard_path(corpus, split, s)
        with ShardWriter(path) as writer:
            for p in range(pairs_per_shard):
                world = _field(rng, size * 2)
                (y1, x1), (y2, x2) = rng.integers(0, size // 2, (2, 2))
                key = f"synthetic{s:03d}-{p:08d}"
                views = [world[y : y + size, x : x + size] for y, x in ((y1, x1), (y2, x2))]
                K = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float64)
                record = PairRecord(
                    scene_id=f"synthetic{s:03d}", scene_uri=f"synthetic:{s}", pair_index=p, seed=seed,
                    renderer="synthetic", img1=views[0], img2=views[1],
                    depth1=np.full((size, size), 2.0, np.float32), depth2=np.full((size, size), 2.0, np.float32),
                    K1=K, K2=K, cam2world1=np.eye(4), cam2world2=np.eye(4),
                    covis=CovisScores(0.75, 0.75, 0.75, 0.75), attempts=1,
                )
                fields = encode_sample(record, key)
                meta = record.meta()
                writer.write(key, fields)
                rows["key"].append(key)
                rows["shard"].append(path.relative_to(corpus).as_posix())
                rows["split"].append(split)
                rows["scene_id"].append(meta["scene_id"])
                rows["pair_index"].append(p)
            writer.close()
        paths.append(path)
    manifest = CorpusLayout(corpus).manifest
    if manifest.is_file():
        kept = pq.read_table(manifest).to_pydict()
        others = [i for i, s in enumerate(kept["split"]) if s != split]
        rows = {name: [kept[name][i] for i in others] + values for name, values in rows.items()}
    pq.write_table(pa.table(rows), manifest)
    return paths

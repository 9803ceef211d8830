"""A small synthetic pair corpus in the corpus layout (shards + manifest.parquet).

For smoke tests and throughput benchmarks where no rendered corpus is at hand: each pair is two
overlapping windows of one smooth random colour field, so cross-view completion is learnable.
Depth and poses are placeholders (constant depth, identity poses); only the images matter here.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np


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


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_synthetic_corpus(
    corpus_dir: str | Path,
    shards: int = 2,
    pairs_per_shard: int = 8,
    size: int = 64,
    split: str = "train",
    seed: int = 0,
) -> list[Path]:
    """Write shards/<split>/pairs-%06d.tar and manifest.parquet; returns the shard paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = Path(corpus_dir)
    out = corpus / "shards" / split
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"shard": [], "split": [], "scene_id": [], "pair_index": []}
    paths = []
    for s in range(shards):
        path = out / f"pairs-{s:06d}.tar"
        tmp = path.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w") as tar:
            for p in range(pairs_per_shard):
                world = _field(rng, size * 2)
                (y1, x1), (y2, x2) = rng.integers(0, size // 2, (2, 2))
                key = f"synthetic{s:03d}-{p:08d}"
                for view, (y, x) in (("img1", (y1, x1)), ("img2", (y2, x2))):
                    crop = cv2.cvtColor(world[y : y + size, x : x + size], cv2.COLOR_RGB2BGR)
                    _add(tar, f"{key}.{view}.jpg", cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
                depth = np.full((size, size), 2000, np.uint16)
                png = cv2.imencode(".png", depth)[1].tobytes()
                _add(tar, f"{key}.depth1.png", png)
                _add(tar, f"{key}.depth2.png", png)
                meta = {"scene_id": f"synthetic{s:03d}", "pair_index": p, "width": size, "height": size,
                        "depth_scale": 0.001, "renderer": "synthetic", "schema_version": 1}
                _add(tar, f"{key}.meta.json", json.dumps(meta).encode())
                rows["shard"].append(f"shards/{split}/{path.name}")
                rows["split"].append(split)
                rows["scene_id"].append(meta["scene_id"])
                rows["pair_index"].append(p)
        tmp.rename(path)
        paths.append(path)
    pq.write_table(pa.table(rows), corpus / "manifest.parquet")
    return paths

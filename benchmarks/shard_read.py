"""Shard read throughput per worker: pairs/s from WebDataset shards vs plain JPEG files.

Compares, in one process (= one data-loader worker), on the same images:
  shard-full     rendering.shards.read_shard: tar + 2 JPEG + 2 uint16 PNG + meta.json per pair
  shard-images   tar + the 2 JPEGs only (what an RGB-only loader decodes)
  webdataset     stock webdataset.WebDataset(...).decode("rgb8") + uint16 depth handler
  jpeg-files     the same JPEGs as loose files: open + read + cv2.imdecode, 2 per pair
Prints the median of --repeats runs and the ratios to jpeg-files.

  python benchmarks/shard_read.py runs/quickstart/corpus --repeats 5
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from rendering.shards import decode_rgb, iter_raw_samples, read_shard


def shard_full(shards: list[Path]) -> int:
    return sum(1 for shard in shards for _ in read_shard(shard))


def shard_images(shards: list[Path]) -> int:
    n = 0
    for shard in shards:
        for _key, fields in iter_raw_samples(shard):
            for name in ("img1.jpg", "img2.jpg"):
                decode_rgb(fields[name])
            n += 1
    return n


def stock_webdataset(shards: list[Path]) -> int:
    import webdataset as wds
    from PIL import Image

    def uint16_png(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)))

    ds = wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode(
        wds.handle_extension("depth1.png depth2.png", uint16_png), "rgb8"
    )
    return sum(1 for _ in ds)


def export_jpegs(shards: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for shard in shards:
        for key, fields in iter_raw_samples(shard):
            files = []
            for name in ("img1.jpg", "img2.jpg"):
                path = folder / f"{key}.{name}"
                path.write_bytes(fields[name])
                files.append(path)
            pairs.append((files[0], files[1]))
    return pairs


def jpeg_files(pairs: list[tuple[Path, Path]]) -> int:
    for pair in pairs:
        for path in pair:
            bgr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            np.ascontiguousarray(bgr[:, :, ::-1])
    return len(pairs)


def timed(fn, arg, repeats: int) -> tuple[float, int]:
    rates = []
    n = 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn(arg)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="a corpus folder (holds shards/)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-shards", type=int, default=8)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one worker = one core
    shards = sorted(args.corpus.glob("shards/*/pairs-*.tar"))[: args.max_shards]
    if not shards:
        raise SystemExit(f"no shards under {args.corpus}/shards")
    first = next(read_shard(shards[0]))
    print(f"{len(shards)} shards, images {first['img1'].shape[1]}x{first['img1'].shape[0]}, "
          f"median of {args.repeats} runs, one process")
    with tempfile.TemporaryDirectory() as tmp:
        pairs = export_jpegs(shards, Path(tmp))
        results = {
            "jpeg-files": timed(jpeg_files, pairs, args.repeats),
            "shard-images": timed(shard_images, shards, args.repeats),
            "shard-full": timed(shard_full, shards, args.repeats),
            "webdataset": timed(stock_webdataset, shards, args.repeats),
        }
    base = results["jpeg-files"][0]
    print(f"{'reader':<14} {'pairs':>6} {'pairs/s':>9} {'vs jpeg-files':>14}")
    for name, (rate, n) in results.items():
        print(f"{name:<14} {n:>6} {rate:>9.0f} {rate / base:>13.2f}x")


if __name__ == "__main__":
    main()

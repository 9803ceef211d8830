"""Shard read throughput per worker: pairs/s from WebDataset shards vs plain JPEG files.

Compares, in one process (= one data-loader worker), on the same images:
  jpeg-files     the same JPEGs as loose files: open + read + OpenCV decode to RGB, 2 per pair (the
                 peer; decoded by this script, not the project, so it is the same before and after)
  shard-full     rendering.shards.read_shard: tar + 2 JPEG + 2 depth + meta.json + schema check
  shard-images   tar + the 2 JPEGs only (what an RGB-only loader decodes)
  loader         the training loader's sample stage (training.pair_loader.shard_samples) + its 2 JPEG decodes
  webdataset     stock webdataset.WebDataset(...).decode("rgb8") (depth decoded by its own handlers)
Readers alternate round by round and are timed in process CPU time (user + system: what one
worker costs, and steadier than wall time on a shared machine); prints the median of --repeats
rounds and the ratios to jpeg-files. Shards of an older schema are first rewritten in the schema of the code on PYTHONPATH
(same images, same depth units) into a temporary folder, so the figures are those of that code's
format: the same command measures an older checkout (PYTHONPATH=<old checkout>) for a
before/after. A second table compares the depth encodings (size and decode time per map).

  python benchmarks/shard_read.py runs/quickstart/corpus --repeats 5
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from rendering.pair import SCHEMA_VERSION
from rendering.shards import ShardWriter, decode_depth, decode_rgb, iter_raw_samples, read_shard

SAMPLE_IMAGES = ("img1.jpg", "img2.jpg")
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def raw_jpeg_decode(data: bytes) -> np.ndarray:
    """The peer's decode: OpenCV straight to RGB where it can (>= 4.11), else BGR + channel flip."""
    buffer = np.frombuffer(data, np.uint8)
    if _IMREAD_RGB is not None:
        return cv2.imdecode(buffer, _IMREAD_RGB)
    return np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1])


def npy_bytes(units: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, units)
    return buffer.getvalue()


def png_units(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def depth_units(fields: dict[str, bytes], view: str) -> np.ndarray:
    if f"{view}.npy" in fields:
        return np.load(io.BytesIO(fields[f"{view}.npy"]))
    return png_units(fields[f"{view}.png"])


def shard_full(shards: list[Path]) -> int:
    return sum(1 for shard in shards for _ in read_shard(shard))


def shard_images(shards: list[Path]) -> int:
    n = 0
    for shard in shards:
        for _key, fields in iter_raw_samples(shard):
            for name in SAMPLE_IMAGES:
                decode_rgb(fields[name])
            n += 1
    return n


def loader_samples(shards: list[Path]) -> int:
    import training.pair_loader as loader

    def fail(exc: Exception) -> bool:
        raise exc

    urls = ({"url": str(s)} for s in shards)
    if hasattr(loader, "shard_samples"):
        samples = loader.shard_samples(urls, fail)
    else:  # checkouts whose loader read tars with webdataset
        import webdataset as wds

        samples = wds.tarfile_to_samples(handler=fail)(urls)
    loader_decode = loader.decode_rgb
    n = 0
    for sample in samples:
        for name in SAMPLE_IMAGES:
            loader_decode(sample[name], name)
        n += 1
    return n


def stock_webdataset(shards: list[Path]) -> int:
    """Stock decoding; a 16-bit PNG depth (schema 1) needs a handler to come back as uint16."""
    import webdataset as wds

    png_depth = wds.handle_extension("depth1.png depth2.png", png_units)
    ds = wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode(png_depth, "rgb8")
    return sum(1 for _ in ds)


def export_jpegs(shards: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for shard in shards:
        for key, fields in iter_raw_samples(shard):
            files = []
            for name in SAMPLE_IMAGES:
                path = folder / f"{key}.{name}"
                path.write_bytes(fields[name])
                files.append(path)
            pairs.append((files[0], files[1]))
    return pairs


def jpeg_files(pairs: list[tuple[Path, Path]]) -> int:
    for pair in pairs:
        for path in pair:
            raw_jpeg_decode(path.read_bytes())
    return len(pairs)


def current_schema(shards: list[Path], folder: Path) -> list[Path]:
    """The shards as the code on PYTHONPATH writes them (older schemas rewritten into ``folder``)."""
    out = []
    for index, shard in enumerate(shards):
        samples = list(iter_raw_samples(shard))
        if json.loads(samples[0][1]["meta.json"])["schema_version"] == SCHEMA_VERSION:
            out.append(shard)
            continue
        path = folder / f"pairs-{index:06d}.tar"
        with ShardWriter(path) as writer:
            for key, fields in samples:
                meta = json.loads(fields["meta.json"])
                new = {name: data for name, data in fields.items() if not name.startswith("depth")}
                for view in ("depth1", "depth2"):
                    new[f"{view}.npy"] = npy_bytes(depth_units(fields, view))
                meta["schema_version"] = SCHEMA_VERSION
                new["meta.json"] = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
                writer.write(key, new)
            writer.close()
        out.append(path)
    return out


def alternate(readers: dict[str, tuple[Callable, object]], repeats: int) -> dict[str, tuple[float, int]]:
    """Median pairs per CPU second per reader, the readers taking turns round by round."""
    rates: dict[str, list[float]] = {name: [] for name in readers}
    counts: dict[str, int] = {}
    for _ in range(repeats):
        for name, (fn, arg) in readers.items():
            start = time.process_time()
            counts[name] = fn(arg)
            rates[name].append(counts[name] / (time.process_time() - start))
    return {name: (statistics.median(r), counts[name]) for name, r in rates.items()}


def depth_formats(shards: list[Path], repeats: int) -> None:
    """Size and decode time per depth map (the project's decode_depth): .npy vs 16-bit PNG."""
    units = [depth_units(fields, "depth1") for s in shards for _k, fields in iter_raw_samples(s)]
    shape = units[0].shape
    encodings = {
        "npy (schema 2)": [npy_bytes(u) for u in units],
        "16-bit PNG (schema 1)": [cv2.imencode(".png", u)[1].tobytes() for u in units],
    }
    takes_shape = "shape" in inspect.signature(decode_depth).parameters
    print(f"\n{'depth encoding':<22} {'KiB/map':>8} {'us/map':>7}")
    for name, blobs in encodings.items():
        try:
            decode_depth(blobs[0], 0.001)
        except ValueError:
            print(f"{name:<22} {np.mean([len(b) for b in blobs]) / 1024:>8.1f} {'(not read by this code)':>7}")
            continue
        times = []
        for _ in range(repeats):
            start = time.process_time()
            for blob in blobs:
                decode_depth(blob, 0.001, shape) if takes_shape else decode_depth(blob, 0.001)
            times.append((time.process_time() - start) / len(blobs))
        print(f"{name:<22} {np.mean([len(b) for b in blobs]) / 1024:>8.1f} {statistics.median(times) * 1e6:>7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="a corpus folder (holds shards/)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-shards", type=int, default=8)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one worker = one core
    found = sorted(args.corpus.glob("shards/*/pairs-*.tar"))[: args.max_shards]
    if not found:
        raise SystemExit(f"no shards under {args.corpus}/shards")
    with tempfile.TemporaryDirectory() as tmp:
        shards = current_schema(found, Path(tmp))
        first = next(read_shard(shards[0]))
        print(f"{len(shards)} shards, images {first['img1'].shape[1]}x{first['img1'].shape[0]}, "
              f"schema {SCHEMA_VERSION}, median of {args.repeats} alternating rounds, CPU time of one process")
        jpeg_dir = Path(tmp) / "jpeg"
        jpeg_dir.mkdir()
        pairs = export_jpegs(shards, jpeg_dir)
        results = alternate(
            {
                "jpeg-files": (jpeg_files, pairs),
                "shard-full": (shard_full, shards),
                "shard-images": (shard_images, shards),
                "loader": (loader_samples, shards),
                "webdataset": (stock_webdataset, shards),
            },
            args.repeats,
        )
        base = results["jpeg-files"][0]
        print(f"{'reader':<14} {'pairs':>6} {'pairs/s':>9} {'vs jpeg-files':>14}")
        for name, (rate, n) in results.items():
            print(f"{name:<14} {n:>6} {rate:>9.0f} {rate / base:>13.2f}x")
        depth_formats(shards, args.repeats)


if __name__ == "__main__":
    main()

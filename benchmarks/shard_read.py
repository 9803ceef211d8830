"""Shard read throughput per worker: pairs/s from WebDataset shards vs plain JPEG files.

Compares, in one process (= one data-loader worker), on the same images:
  jpeg-files     the same JPEGs as loose files: open + read + OpenCV decode to RGB, 2 per pair (the
                 peer; decoded by this script, not the project, so it is the same before and after)
  files-full     a second peer for full samples: every member of a sample as a loose file (2 JPEGs
                 as above, 2 depth .npy through numpy.load, converted to float32 metres, meta.json
                 through orjson, no schema check), also decoded by this script
  shard-full     rendering.shards.read_shard: tar + 2 JPEG + 2 depth + meta.json + schema check
  shard-images   tar + the 2 JPEGs only (what an RGB-only loader decodes)
  loader         the training loader's sample stage (training.pair_loader.shard_samples) + its 2 JPEG decodes
  webdataset     stock webdataset.WebDataset(...).decode("rgb8") (depth decoded by its own handlers)
  pair-stream    with --pair-stream: the training loader's whole work per worker (PairStream:
                 decode + crop + colour jitter + batches of 16)
With --baseline CHECKOUT, CHECKOUT's rendering/shards.py (e.g. a git worktree of an older commit)
is imported beside the current one and its shard-full and loader readers ("base-full",
"base-loader") join the same alternating rounds: a before/after in one run. --stages adds a table
of the time per pair of each step of a full-sample decode (current and baseline code).
Readers alternate round by round and are timed in process CPU time (user + system: what one
worker costs, and steadier than wall time on a shared machine); prints the median of --repeats
rounds, the ratios to jpeg-files and the minor page faults per pair (fresh memory, or pages of a
mapped shard). The process first takes the memory setting the training loader's workers take
(rendering.allocator.keep_freed_memory, the function their worker init calls: freed memory is
kept for the next samples; glibc only), so every row, the peers included, runs as in such a
worker; --allocator default leaves the C library's own adaptive setting, which then depends on
what the process allocated and freed before (importing torch for the loader row raises it).
Shards of an older schema are first rewritten in the schema of the code on PYTHONPATH (same
images, same depth units) into a temporary folder, so the figures are those of that code's
format: the same command measures an older checkout (PYTHONPATH=<old checkout>) for a
before/after. A second table compares the depth encodings (size and decode time per map).

  python benchmarks/shard_read.py runs/quickstart/corpus --repeats 5
  python benchmarks/shard_read.py CORPUS --repeats 7 --baseline /tmp/main-checkout --stages
  python benchmarks/shard_read.py CORPUS --repeats 7 --allocator default
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import resource
import statistics
import sys
import types
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import orjson

from rendering.allocator import keep_freed_memory
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


def shard_full(shards: list[Path], reader: Callable = read_shard) -> int:
    return sum(1 for shard in shards for _ in reader(shard))


def shard_images(shards: list[Path]) -> int:
    n = 0
    for shard in shards:
        for _key, fields in iter_raw_samples(shard):
            for name in SAMPLE_IMAGES:
                decode_rgb(fields[name])
            n += 1
    return n


def base_loader_samples(arg: tuple[list[Path], types.ModuleType]) -> int:
    """The loader's sample stage on a baseline checkout's tar reader (the stage is a plain loop
    over iter_raw_samples in both), + its 2 JPEG decodes."""
    shards, base = arg
    n = 0
    for shard in shards:
        url = str(shard)
        for key, fields in base.iter_raw_samples(url):
            sample = {"__key__": key, "__url__": url, **fields}
            for name in SAMPLE_IMAGES:
                base.decode_rgb(sample[name])
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


class PairStreamReader:
    """The training loader's whole per-worker work: training.pair_loader.PairStream batches
    (decode, crop to 7/8 of the image as the paper's 224 from 256, colour jitter, batches of 16),
    256 pairs per call from one endless stream."""

    def __init__(self, shards: list[Path], size: int) -> None:
        import torch

        from training.pair_loader import AugmentConfig, PairStream

        torch.set_num_threads(1)
        self.batch_size = 16
        crop = size * 7 // 8
        self.stream = iter(PairStream([str(s) for s in shards], AugmentConfig(crop), self.batch_size, seed=0,
                                      shuffle_buffer=64))

    def __call__(self, _arg: object) -> int:
        for _ in range(256 // self.batch_size):
            next(self.stream)
        return 256 // self.batch_size * self.batch_size


def stock_webdataset(shards: list[Path]) -> int:
    """Stock decoding; a 16-bit PNG depth (schema 1) needs a handler to come back as uint16."""
    import webdataset as wds

    png_depth = wds.handle_extension("depth1.png depth2.png", png_units)
    ds = wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode(png_depth, "rgb8")
    return sum(1 for _ in ds)


FULL_MEMBERS = ("img1.jpg", "img2.jpg", "depth1.npy", "depth2.npy", "meta.json")


def export_members(shards: list[Path], folder: Path) -> list[tuple[Path, ...]]:
    """Every member of every sample as a loose file; per pair the paths in FULL_MEMBERS order."""
    samples = []
    for shard in shards:
        for key, fields in iter_raw_samples(shard):
            files = []
            for name in FULL_MEMBERS:
                path = folder / f"{key}.{name}"
                path.write_bytes(fields[name])
                files.append(path)
            samples.append(tuple(files))
    return samples


def jpeg_files(samples: list[tuple[Path, ...]]) -> int:
    for files in samples:
        for path in files[:2]:
            raw_jpeg_decode(path.read_bytes())
    return len(samples)


def full_files(samples: list[tuple[Path, ...]]) -> int:
    """The loose-file peer of a full sample: 2 JPEGs, 2 depth maps in metres, meta.json."""
    for img1, img2, depth1, depth2, meta_path in samples:
        raw_jpeg_decode(img1.read_bytes())
        raw_jpeg_decode(img2.read_bytes())
        scale = np.float32(orjson.loads(meta_path.read_bytes())["depth_scale"])
        for path in (depth1, depth2):
            np.load(path).astype(np.float32) * scale
    return len(samples)


def load_baseline(checkout: Path) -> types.ModuleType:
    """``CHECKOUT/rendering/shards.py`` as a module of its own (its imports of other project
    modules resolve to the current code, which the shard reader only uses for layout/pair names)."""
    path = checkout / "rendering" / "shards.py"
    if not path.is_file():
        raise SystemExit(f"--baseline: no {path}")
    spec = importlib.util.spec_from_file_location("baseline_shards", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


def minor_faults() -> int:
    """Minor page faults of this process so far (a fresh page of memory, or a page of a mapped file)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def alternate(readers: dict[str, tuple[Callable, object]], repeats: int) -> dict[str, tuple[float, int, float]]:
    """Median pairs per CPU second and minor page faults per pair per reader, the readers taking
    turns round by round."""
    rates: dict[str, list[float]] = {name: [] for name in readers}
    faults: dict[str, list[float]] = {name: [] for name in readers}
    counts: dict[str, int] = {}
    for _ in range(repeats):
        for name, (fn, arg) in readers.items():
            faults_before = minor_faults()
            start = time.process_time()
            counts[name] = fn(arg)
            rates[name].append(counts[name] / (time.process_time() - start))
            faults[name].append((minor_faults() - faults_before) / counts[name])
    return {name: (statistics.median(r), counts[name], statistics.median(faults[name])) for name, r in rates.items()}


def stage_times(shards: list[Path], module: types.ModuleType, repeats: int) -> dict[str, float]:
    """Microseconds per pair of each step of a full-sample decode with ``module``'s functions,
    on bytes already in memory except for "tar scan" (median of ``repeats``)."""
    samples = [fields for s in shards for _k, fields in module.iter_raw_samples(s)]
    metas = [orjson.loads(f["meta.json"]) for f in samples]
    takes_shape = "shape" in inspect.signature(module.decode_depth).parameters

    def tar_scan() -> None:
        for shard in shards:
            for _ in module.iter_raw_samples(shard):
                pass

    def jpegs() -> None:
        for fields in samples:
            module.decode_rgb(fields["img1.jpg"])
            module.decode_rgb(fields["img2.jpg"])

    def depths() -> None:
        for fields, meta in zip(samples, metas):
            shape = (meta["height"], meta["width"])
            for name in ("depth1.npy", "depth2.npy"):
                if takes_shape:
                    module.decode_depth(fields[name], meta["depth_scale"], shape)
                else:
                    module.decode_depth(fields[name], meta["depth_scale"])

    def meta_parse() -> None:
        for fields in samples:
            orjson.loads(fields["meta.json"])

    def meta_check() -> None:
        for meta in metas:
            module.meta_problems(meta)

    def whole() -> None:
        for shard in shards:
            for _ in module.read_shard(shard):
                pass

    steps = {"tar scan (+ copies)": tar_scan, "2 JPEG decodes": jpegs, "2 depth -> metres": depths,
             "meta.json parse": meta_parse, "meta.json check": meta_check, "read_shard (all)": whole}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.process_time()
            step()
            times[name].append((time.process_time() - start) / len(samples) * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def print_stages(shards: list[Path], modules: dict[str, types.ModuleType], repeats: int, peer_us: float) -> None:
    columns = {label: stage_times(shards, module, repeats) for label, module in modules.items()}
    print(f"\n{'step, us per pair':<22}" + "".join(f" {label:>9}" for label in columns))
    for step in next(iter(columns.values())):
        print(f"{step:<22}" + "".join(f" {col[step]:>9.1f}" for col in columns.values()))
    print(f"{'jpeg-files (peer)':<22} {peer_us:>9.1f}")


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
    parser.add_argument("--baseline", type=Path, help="a checkout whose rendering/shards.py is timed beside this one")
    parser.add_argument("--stages", action="store_true", help="also time each step of a full-sample decode")
    parser.add_argument("--pair-stream", action="store_true", help="also time the training loader's whole per-worker work")
    parser.add_argument("--allocator", choices=("worker", "default"), default="worker",
                        help="worker: this process takes the memory setting of the training loader's workers "
                             "(rendering.allocator.keep_freed_memory); default: the C library's own")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one worker = one core
    allocator = "C library default"
    if args.allocator == "worker":
        allocator = "loader-worker setting" if keep_freed_memory() else "C library default (setting is glibc-only)"
    found = sorted(args.corpus.glob("shards/*/pairs-*.tar"))[: args.max_shards]
    if not found:
        raise SystemExit(f"no shards under {args.corpus}/shards")
    with tempfile.TemporaryDirectory() as tmp:
        shards = current_schema(found, Path(tmp))
        first = next(read_shard(shards[0]))
        print(f"{len(shards)} shards, images {first['img1'].shape[1]}x{first['img1'].shape[0]}, "
              f"schema {SCHEMA_VERSION}, median of {args.repeats} alternating rounds, CPU time of one process, "
              f"allocator: {allocator}")
        loose_dir = Path(tmp) / "loose"
        loose_dir.mkdir()
        loose = export_members(shards, loose_dir)
        readers: dict[str, tuple[Callable, object]] = {
            "jpeg-files": (jpeg_files, loose),
            "files-full": (full_files, loose),
            "shard-full": (shard_full, shards),
            "shard-images": (shard_images, shards),
            "loader": (loader_samples, shards),
            "webdataset": (stock_webdataset, shards),
        }
        if args.pair_stream:
            readers["pair-stream"] = (PairStreamReader(shards, first["img1"].shape[0]), None)
        baseline = load_baseline(args.baseline) if args.baseline else None
        if baseline is not None:
            readers["base-full"] = (lambda arg: shard_full(arg, baseline.read_shard), shards)
            readers["base-loader"] = (base_loader_samples, (shards, baseline))
        results = alternate(readers, args.repeats)
        peer, full_peer = results["jpeg-files"][0], results["files-full"][0]
        print(f"{'reader':<14} {'pairs':>6} {'pairs/s':>9} {'vs jpeg-files':>14} {'vs files-full':>14} {'faults/pair':>12}")
        for name, (rate, n, faults) in results.items():
            print(f"{name:<14} {n:>6} {rate:>9.0f} {rate / peer:>13.2f}x {rate / full_peer:>13.2f}x {faults:>12.1f}")
        if args.stages:
            import rendering.shards as current

            modules = {"current": current} if baseline is None else {"current": current, "baseline": baseline}
            print_stages(shards, modules, args.repeats, 1e6 / peer)
        depth_formats(shards, args.repeats)


if __name__ == "__main__":
    main()

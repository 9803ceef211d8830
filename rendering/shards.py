"""WebDataset shards of image pairs: encode, write atomically, read back with precise errors.

A shard is a plain tar file (readable by `tar`, `tarfile` and stock `webdataset`) holding, per
pair, ``<key>.img1.jpg``, ``<key>.img2.jpg`` (or ``.png``), ``<key>.depth1.png``,
``<key>.depth2.png`` (uint16, depth / depth_scale) and ``<key>.meta.json``. Tar headers carry no
clock, owner or host information, so the same pairs always give byte-identical shards: a shard's
sha256 identifies its content across runs, machines and resumes.

This module imports neither torch nor prefect: render workers need only numpy, OpenCV and the
standard library.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rendering.layout import SHARD_GLOB, SHARD_PATTERN, CorpusLayout  # noqa: F401  (re-exported)
from rendering.pair import SCHEMA_VERSION, PairRecord

IMAGE_FORMATS = ("jpg", "png")
DEPTH_FIELDS = ("depth1.png", "depth2.png")
META_FIELD = "meta.json"
# Fixed member order inside a sample; the image extension is filled in per shard.
_MEMBER_ORDER = ("img1", "img2", "depth1", "depth2", "meta")
UINT16_MAX = np.iinfo(np.uint16).max


class ShardReadError(ValueError):
    """A shard is missing, truncated, corrupt, or breaks the sample schema."""


@dataclass(frozen=True)
class ShardInfo:
    """A completed shard: where it is, its size in bytes, its sha256 and its sample keys."""

    path: Path
    size: int
    sha256: str
    keys: tuple[str, ...]


def shard_path(corpus_dir: Path, split: str, index: int) -> Path:
    """``<corpus>/shards/<split>/pairs-%06d.tar`` (rendering.layout)."""
    return CorpusLayout(corpus_dir).shard(split, index)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Field codecs


def encode_rgb(image: np.ndarray, image_format: str, jpeg_quality: int = 95) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG or PNG bytes. OpenCV works in BGR, hence the channel flip."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"RGB image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
    ok, buf = cv2.imencode("." + image_format, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {image_format}")
    return buf.tobytes()


def decode_rgb(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3); raises ValueError when the bytes do not decode."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("image bytes do not decode")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def encode_depth(depth: np.ndarray, depth_scale: float) -> bytes:
    """Float metres -> 16-bit PNG of depth / depth_scale (0 = invalid; far values clip at 65535)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise ValueError("depth holds NaN, infinite or negative values")
    units = np.rint(depth / np.float32(depth_scale))
    units = np.clip(units, 0, UINT16_MAX).astype(np.uint16)
    units[depth <= 0] = 0
    ok, buf = cv2.imencode(".png", units)
    if not ok:
        raise ValueError("OpenCV could not encode a depth PNG")
    return buf.tobytes()


def decode_depth(data: bytes, depth_scale: float) -> np.ndarray:
    """16-bit PNG bytes -> float32 metres (0 = invalid)."""
    units = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if units is None or units.dtype != np.uint16 or units.ndim != 2:
        raise ValueError("depth bytes are not a single-channel 16-bit PNG")
    return units.astype(np.float32) * np.float32(depth_scale)


def encode_meta(meta: dict) -> bytes:
    """Canonical JSON (sorted keys, fixed separators) so that equal metadata gives equal bytes."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")


def check_key(key: str) -> str:
    if not key or "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' or '/'")
    return key


def encode_sample(
    record: PairRecord, key: str, image_format: str = "jpg", jpeg_quality: int = 95, depth_scale: float = 0.001
) -> dict[str, bytes]:
    """One pair -> the WebDataset fields of the shard schema (without ``__key__``)."""
    check_key(key)
    return {
        f"img1.{image_format}": encode_rgb(record.img1, image_format, jpeg_quality),
        f"img2.{image_format}": encode_rgb(record.img2, image_format, jpeg_quality),
        "depth1.png": encode_depth(record.depth1, depth_scale),
        "depth2.png": encode_depth(record.depth2, depth_scale),
        META_FIELD: encode_meta(record.meta(depth_scale=depth_scale)),
    }


# ---------------------------------------------------------------------------------------------
# Writing


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name(final: Path) -> Path:
    """Hidden sibling name that no shard glob (``pairs-*.tar``) can match."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, rename over ``path``: readers see all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class ShardWriter:
    """Writes samples to a hidden temporary tar and renames it to its final name on ``close``.

    A crash at any point leaves either no shard or a complete one under the final name; the
    temporary file is removed when the writer is abandoned through an exception.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_name(self.path)
        self._file = open(self._tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)
        self._keys: list[str] = []
        self._closed = False

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        check_key(key)
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r} in shard {self.path}")
        for name in sorted(fields, key=_field_rank):
            data = fields[name]
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self._keys.append(key)

    def close(self) -> ShardInfo:
        """Finish the tar, fsync it, rename it into place and return its size and sha256."""
        if self._closed:
            raise RuntimeError(f"shard writer for {self.path} is already closed")
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._closed = True
        digest = file_sha256(self._tmp)
        size = self._tmp.stat().st_size
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return ShardInfo(self.path, size, digest, tuple(self._keys))

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._tar.close()
        finally:
            self._file.close()
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _field_rank(name: str) -> tuple[int, str]:
    stem = name.split(".", 1)[0]
    return (_MEMBER_ORDER.index(stem) if stem in _MEMBER_ORDER else len(_MEMBER_ORDER), name)


# ---------------------------------------------------------------------------------------------
# Reading


def iter_raw_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {field: bytes})`` per sample in file order, or raise ShardReadError naming the
    shard and member when the tar is truncated or corrupt or a sample's members are not adjacent."""
    path = Path(path)
    if not path.is_file():
        raise ShardReadError(f"shard {path} does not exist")
    current_key: str | None = None
    fields: dict[str, bytes] = {}
    seen: set[str] = set()
    member_name = "<tar header>"
    try:
        with tarfile.open(path, mode="r:") as tar:
            while True:
                member_name = "<tar header after " + (f"{current_key}>" if current_key else "start>")
                member = tar.next()
                if member is None:
                    break
                member_name = member.name
                if not member.isfile():
                    raise ShardReadError(f"shard {path}: member {member.name!r} is not a regular file")
                key, dot, field = member.name.partition(".")
                if not dot or not field or "/" in member.name:
                    raise ShardReadError(f"shard {path}: member {member.name!r} is not named <key>.<field>")
                if key != current_key:
                    if current_key is not None:
                        yield current_key, fields
                    if key in seen:
                        raise ShardReadError(f"shard {path}: sample {key!r} appears twice or is not contiguous")
                    seen.add(key)
                    current_key, fields = key, {}
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise ShardReadError(
                        f"shard {path}: member {member.name!r} is truncated ({len(data)} of {member.size} bytes)"
                    )
                fields[field] = data
    except ShardReadError:
        raise
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardReadError(f"shard {path}: unreadable at member {member_name!r}: {err}") from err
    if current_key is not None:
        yield current_key, fields


def decode_sample(key: str, fields: dict[str, bytes], where: str = "") -> dict:
    """Raw fields -> ``{"__key__", "img1", "img2" (RGB uint8), "depth1", "depth2" (float32 m),
    "meta" (dict)}``; raises ShardReadError naming the member that is missing or does not decode."""
    prefix = f"{where}: " if where else ""
    images = {}
    for view in ("img1", "img2"):
        names = [f"{view}.{fmt}" for fmt in IMAGE_FORMATS if f"{view}.{fmt}" in fields]
        if len(names) != 1:
            raise ShardReadError(f"{prefix}sample {key!r} needs exactly one of {view}.jpg/{view}.png, has {sorted(fields)}")
        try:
            images[view] = decode_rgb(fields[names[0]])
        except ValueError as err:
            raise ShardReadError(f"{prefix}member {key}.{names[0]}: {err}") from err
    if META_FIELD not in fields:
        raise ShardReadError(f"{prefix}sample {key!r} has no meta.json (members: {sorted(fields)})")
    try:
        meta = json.loads(fields[META_FIELD])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardReadError(f"{prefix}member {key}.meta.json is not valid JSON: {err}") from err
    problems = meta_problems(meta)
    if problems:
        raise ShardReadError(f"{prefix}member {key}.meta.json breaks the schema: {'; '.join(problems)}")
    sample = {"__key__": key, **images, "meta": meta}
    for name in DEPTH_FIELDS:
        if name not in fields:
            raise ShardReadError(f"{prefix}sample {key!r} has no {name}")
        try:
            sample[name.split(".")[0]] = decode_depth(fields[name], meta["depth_scale"])
        except ValueError as err:
            raise ShardReadError(f"{prefix}member {key}.{name}: {err}") from err
    for view, depth in (("img1", "depth1"), ("img2", "depth2")):
        expected = (meta["height"], meta["width"])
        if sample[view].shape[:2] != expected or sample[depth].shape != expected:
            raise ShardReadError(
                f"{prefix}sample {key!r}: {view}/{depth} sizes {sample[view].shape[:2]}/{sample[depth].shape} "
                f"differ from meta.json's {expected}"
            )
    return sample


def read_shard(path: Path) -> Iterator[dict]:
    """Decoded samples of one shard (see :func:`decode_sample`)."""
    for key, fields in iter_raw_samples(path):
        yield decode_sample(key, fields, where=f"shard {path}")


# Fields every meta.json must have, with the Python types they must have.
META_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "scene_id": str,
    "scene_uri": str,
    "pair_index": int,
    "seed": int,
    "renderer": str,
    "width": int,
    "height": int,
    "depth_scale": (int, float),
    "K1": list,
    "K2": list,
    "cam2world1": list,
    "cam2world2": list,
    "covis": (int, float),
    "covis_1to2": (int, float),
    "covis_2to1": (int, float),
    "covis_1to2_valid": (int, float),
    "covis_2to1_valid": (int, float),
    "valid1": (int, float),
    "valid2": (int, float),
    "attempts": int,
    "rejections": dict,
}
MATRIX_SHAPES = {"K1": (3, 3), "K2": (3, 3), "cam2world1": (4, 4), "cam2world2": (4, 4)}


def meta_problems(meta: object) -> list[str]:
    """Everything wrong with a meta.json document (empty list = valid)."""
    if not isinstance(meta, dict):
        return [f"meta.json must be an object, got {type(meta).__name__}"]
    problems = []
    for name, kind in META_SCHEMA.items():
        if name not in meta:
            problems.append(f"missing {name!r}")
        elif isinstance(meta[name], bool) or not isinstance(meta[name], kind):
            problems.append(f"{name!r} has type {type(meta[name]).__name__}")
    if problems:
        return problems
    if meta["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {meta['schema_version']} (this code reads {SCHEMA_VERSION})")
    for name, shape in MATRIX_SHAPES.items():
        try:
            matrix = np.asarray(meta[name], dtype=np.float64)
        except (TypeError, ValueError):
            problems.append(f"{name!r} is not a numeric matrix")
            continue
        if matrix.shape != shape or not np.all(np.isfinite(matrix)):
            problems.append(f"{name!r} must be a finite {shape[0]}x{shape[1]} matrix, got shape {matrix.shape}")
    if meta["width"] <= 0 or meta["height"] <= 0 or meta["depth_scale"] <= 0:
        problems.append("width, height and depth_scale must be positive")
    return problems

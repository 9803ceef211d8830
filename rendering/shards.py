"""WebDataset shards of image pairs: encode, write atomically, read back with precise errors.

A shard is a plain tar file (readable by `tar`, `tarfile` and stock `webdataset`) holding, per
pair, ``<key>.img1.jpg``, ``<key>.img2.jpg`` (or ``.png``), ``<key>.depth1.npy``,
``<key>.depth2.npy`` (uint16 NumPy arrays of depth / depth_scale) and ``<key>.meta.json``. Depth is
``.npy`` (schema 2) because every stock WebDataset decoder returns it exactly, whatever image spec
is asked for, and it decodes ~25x faster than a 16-bit PNG; schema-1 shards (``depth*.png``) still
read. Tar headers carry no clock, owner or host information, so the same pairs always give
byte-identical shards: a shard's sha256 identifies its content across runs, machines and resumes.

This module imports neither torch nor prefect: render workers need only numpy, OpenCV and the
standard library.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import mmap
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import orjson

from rendering.atomic import atomic_write_bytes, fsync_dir, temporary_name  # noqa: F401  (re-exported)
from rendering.layout import SHARD_GLOB, SHARD_PATTERN, CorpusLayout  # noqa: F401  (re-exported)
from rendering.pair import PairRecord

IMAGE_FORMATS = ("jpg", "png")
DEPTH_VIEWS = ("depth1", "depth2")
DEPTH_FIELDS = tuple(f"{view}.npy" for view in DEPTH_VIEWS)
# Depth member extension per schema version: 1 wrote 16-bit PNG, 2 writes .npy.
DEPTH_FORMAT_BY_SCHEMA = {1: "png", 2: "npy", 3: "npy"}  # 3 adds information1/2 to meta.json
READABLE_SCHEMAS = tuple(sorted(DEPTH_FORMAT_BY_SCHEMA))
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
    """RGB uint8 (H, W, 3) -> JPEG or PNG bytes. OpenCV works in BGR, hence the channel swap
    (cvtColor: ~5 us at 256 px, against ~0.4 ms for a numpy copy of the reversed-channel view)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"RGB image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
    ok, buf = cv2.imencode("." + image_format, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {image_format}")
    return buf.tobytes()


# OpenCV >= 4.11 decodes straight to RGB; older builds decode BGR and the channels are flipped.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_rgb(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3); raises ValueError when the bytes do not decode."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if _IMREAD_RGB is not None:
        rgb = cv2.imdecode(buffer, _IMREAD_RGB)
        if rgb is None:
            raise ValueError("image bytes do not decode")
        return rgb
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("image bytes do not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def depth_units(depth: np.ndarray, depth_scale: float) -> np.ndarray:
    """Float metres -> uint16 depth / depth_scale (0 = invalid; far values clip at 65535)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise ValueError("depth holds NaN, infinite or negative values")
    units = np.rint(depth / np.float32(depth_scale))
    units = np.clip(units, 0, UINT16_MAX).astype(np.uint16)
    units[depth <= 0] = 0
    return units


def encode_depth(depth: np.ndarray, depth_scale: float) -> bytes:
    """Float metres -> ``.npy`` bytes of a C-order little-endian uint16 (H, W) array of units."""
    units = depth_units(depth, depth_scale).astype("<u2", copy=False)
    return _npy_header(*units.shape) + units.tobytes()


def encode_depth_png(depth: np.ndarray, depth_scale: float) -> bytes:
    """Float metres -> 16-bit PNG of the same units (schema 1's depth, and loose files to look at)."""
    ok, buf = cv2.imencode(".png", depth_units(depth, depth_scale))
    if not ok:
        raise ValueError("OpenCV could not encode a depth PNG")
    return buf.tobytes()


@functools.lru_cache(maxsize=16)
def _npy_header(height: int, width: int) -> bytes:
    """The exact header ``numpy.save`` writes for a C-order '<u2' (height, width) array."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<u2", "fortran_order": False, "shape": (int(height), int(width))}
    )
    return buffer.getvalue()


def decode_depth_units(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``.npy`` (or schema-1 16-bit PNG) bytes -> uint16 (H, W) units; ValueError when not that.

    ``data`` may be any bytes-like object (bytes, a memoryview of a mapped shard). With the
    expected ``shape`` the header written by :func:`encode_depth` is matched as bytes and the
    array is a view of ``data``; other valid .npy files go through numpy's own reader."""
    if data[:6] == b"\x93NUMPY":
        if shape is not None:
            header = _npy_header(*shape)
            if len(data) == len(header) + 2 * shape[0] * shape[1] and data[: len(header)] == header:
                return np.frombuffer(data, dtype="<u2", offset=len(header)).reshape(shape)
        try:
            units = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(f"depth bytes are not a valid .npy array: {err}") from err
        if units.dtype != np.uint16 or units.ndim != 2:
            raise ValueError(f"depth .npy must hold a uint16 (H, W) array, got {units.dtype} {units.shape}")
        return units
    units = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if units is None or units.dtype != np.uint16 or units.ndim != 2:
        raise ValueError("depth bytes are neither a uint16 .npy array nor a single-channel 16-bit PNG")
    return units


def decode_depth(data: bytes, depth_scale: float, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Depth member bytes (.npy, or schema 1's PNG) -> float32 metres (0 = invalid): each value is
    float32(units) * float32(depth_scale), in a new array."""
    metres = decode_depth_units(data, shape).astype(np.float32)
    metres *= np.float32(depth_scale)  # in place: faster than one mixed-type np.multiply (casting buffers)
    return metres


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
        "depth1.npy": encode_depth(record.depth1, depth_scale),
        "depth2.npy": encode_depth(record.depth2, depth_scale),
        META_FIELD: encode_meta(record.meta(depth_scale=depth_scale)),
    }


# ---------------------------------------------------------------------------------------------
# Writing


_BLOCK = 512  # tar block size
_ZERO_BLOCK = bytes(_BLOCK)


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
        self._keys: dict[str, None] = {}  # in writing order
        self._closed = False

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        check_key(key)
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r} in shard {self.path}")
        for name in sorted(fields, key=_field_rank):
            data = fields[name]
            header = member_header(f"{key}.{name}", len(data))
            padding = -len(data) % _BLOCK
            self._file.write(header)
            self._file.write(data)
            if padding:
                self._file.write(_ZERO_BLOCK[:padding])
        self._keys[key] = None

    def close(self) -> ShardInfo:
        """Finish the tar, fsync it, rename it into place and return its size and sha256."""
        if self._closed:
            raise RuntimeError(f"shard writer for {self.path} is already closed")
        self._file.write(_end_of_archive(self._file.tell()))
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
            self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


# The tar header of a shard member, as tarfile writes it in GNU format for a regular file with
# mode 0444, owner 0/0, no owner names and mtime 0: the same bytes, built from one template (a
# shard write took 0.54-0.70 CPU ms per 256-px pair through tarfile.addfile, 0.27-0.30 so).
# Only the name, the size and the checksum differ between members; names of 100 bytes or more
# (a GNU long-name block) and sizes beyond 11 octal digits go through tarfile itself.
def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0o444, 0, 0, 0, "", ""
    return info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape")


_HEADER_TEMPLATE = _tarfile_header("", 0)
_MAX_OCTAL_SIZE = 8**11 - 1


def member_header(name: str, size: int) -> bytes:
    """The 512-byte tar header of a shard member ``name`` of ``size`` bytes (longer for long names)."""
    if not name.isascii() or len(name) >= 100 or size > _MAX_OCTAL_SIZE:
        return _tarfile_header(name, size)
    header = bytearray(_HEADER_TEMPLATE)
    header[: len(name)] = name.encode("ascii")
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"        "  # the checksum counts its own field as spaces
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


def _end_of_archive(offset: int) -> bytes:
    """What tarfile writes on close after ``offset`` bytes: two zero blocks, then zeros up to a
    whole record of 20 blocks."""
    end = offset + 2 * _BLOCK
    return bytes(2 * _BLOCK + (-end % tarfile.RECORDSIZE))


def _field_rank(name: str) -> tuple[int, str]:
    stem = name.split(".", 1)[0]
    return (_MEMBER_ORDER.index(stem) if stem in _MEMBER_ORDER else len(_MEMBER_ORDER), name)


# ---------------------------------------------------------------------------------------------
# Reading


_REGULAR_TYPES = (b"0", b"\0")
_LONG_NAME_TYPE = b"L"  # GNU: the next member's name is this member's data
_PAX_TYPES = (b"x", b"g")  # POSIX extended headers (path=..., size=...)


def _header_number(field: bytes) -> int:
    """A numeric tar header field: octal text, or GNU base-256 when the top bit is set."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.strip(b" \0")
    return int(text, 8) if text else 0


def _checksum_matches(header: bytes, stored: int) -> bool:
    """The tar header checksum (byte sum with the checksum field read as spaces), at C speed.

    zlib.adler32's low 16 bits are 1 + the byte sum modulo 65521, and a header's byte sum is
    below 2 x 65521, so the sum is one of two values: the check is exact up to that ambiguity."""
    byte_sum_mod = (zlib.adler32(header) & 0xFFFF) - 1
    expected = stored - 256 + sum(header[148:156])  # what sum(header) must be
    return expected >= 0 and expected % 65521 == byte_sum_mod % 65521


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<len> key=value\\n"`` records of a POSIX extended header."""
    records, pos = {}, 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8")
        pos += length
    return records


def _member_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0" and header[345] != 0:  # POSIX ustar: a path prefix
        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
    return name.decode("utf-8", "replace")


def _shard_buffer(path: Path) -> bytes | mmap.mmap:
    """The whole shard without copying it: a read-only memory map of the file (its pages are the
    page cache's), or the file's bytes where it cannot be mapped (empty file, a file system
    without mmap). Shards are written once and renamed into place, never rewritten in place, so
    the map always sees a file of the size it was opened with."""
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # ValueError: empty file
            return f.read()


def _tar_entries(buffer: bytes | mmap.mmap, path: Path) -> Iterator[tuple[str, int, int]]:
    """``(member name, data offset, size)`` of every regular file of a tar held in ``buffer``, in
    file order, parsed as it goes (a sample before a corrupt or truncated place is still yielded).

    A plain reader of the tar format (512-byte headers, GNU long names, POSIX extended headers):
    per member it reads one header and skips the data, instead of tarfile's per-member object
    machinery (~3x the time per member). Raises ShardReadError naming the shard and member when
    a header is corrupt, the file is truncated or a member is not a regular file."""
    name_override: str | None = None
    size_override: int | None = None
    member = "<tar header at start>"
    total = len(buffer)
    pos = 0
    while True:
        header = buffer[pos : pos + _BLOCK]
        if len(header) < _BLOCK:
            if not header:
                return  # no end-of-archive blocks: tolerated, like tarfile
            raise ShardReadError(f"shard {path}: truncated tar header after {member!r}")
        if header[0] == 0 and header == _ZERO_BLOCK:
            return  # end-of-archive marker
        try:
            stored = _header_number(header[148:156])
            size = _header_number(header[124:136])
        except ValueError as err:
            raise ShardReadError(f"shard {path}: corrupt tar header after {member!r}: {err}") from None
        if not _checksum_matches(header, stored):
            raise ShardReadError(f"shard {path}: corrupt tar header (bad checksum) after {member!r}")
        kind = header[156:157]
        member = name_override or _member_name(header)
        if size_override is not None:
            size = size_override
        start = pos + _BLOCK
        padded = size + (-size % _BLOCK)
        if total - start < padded:
            raise ShardReadError(
                f"shard {path}: member {member!r} is truncated ({max(0, min(total - start, size))} of {size} bytes)"
            )
        pos = start + padded
        if kind in _REGULAR_TYPES:
            name_override = size_override = None
            yield member, start, size
            continue
        if kind == _LONG_NAME_TYPE:
            name_override = buffer[start : start + size].split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if kind in _PAX_TYPES:
            try:
                records = _pax_records(buffer[start : start + size])
            except (ValueError, UnicodeDecodeError) as err:
                raise ShardReadError(f"shard {path}: corrupt extended header after {member!r}: {err}") from None
            if kind == b"x":
                name_override = records.get("path", name_override)
                size_override = int(records["size"]) if "size" in records else None
            continue
        raise ShardReadError(f"shard {path}: member {member!r} is not a regular file")


def iter_tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(member name, data)`` of every regular file of a tar, in file order, in one pass over a
    memory map of the file (see :func:`_tar_entries`; each member's data is copied once)."""
    buffer = _shard_buffer(path)
    for name, start, size in _tar_entries(buffer, path):
        yield name, buffer[start : start + size]


def _iter_samples(path: Path, views: bool) -> Iterator[tuple[str, dict]]:
    """``(key, {field: data})`` per sample in file order; ``data`` is bytes, or with ``views`` a
    zero-copy memoryview of the mapped shard (valid as long as it is referenced)."""
    path = Path(path)
    if not path.is_file():
        raise ShardReadError(f"shard {path} does not exist")
    current_key: str | None = None
    fields: dict = {}
    seen: set[str] = set()
    try:
        buffer = _shard_buffer(path)
        whole = memoryview(buffer) if views else buffer
        for name, start, size in _tar_entries(buffer, path):
            key, dot, field = name.partition(".")
            if not dot or not field or "/" in name:
                raise ShardReadError(f"shard {path}: member {name!r} is not named <key>.<field>")
            if key != current_key:
                if current_key is not None:
                    yield current_key, fields
                if key in seen:
                    raise ShardReadError(f"shard {path}: sample {key!r} appears twice or is not contiguous")
                seen.add(key)
                current_key, fields = key, {}
            fields[field] = whole[start : start + size]
    except OSError as err:
        raise ShardReadError(f"shard {path}: unreadable: {err}") from err
    if current_key is not None:
        yield current_key, fields


def iter_raw_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {field: bytes})`` per sample in file order, or raise ShardReadError naming the
    shard and member when the tar is truncated or corrupt or a sample's members are not adjacent."""
    return _iter_samples(path, views=False)


_IMAGE_NAMES = {view: tuple(f"{view}.{fmt}" for fmt in IMAGE_FORMATS) for view in ("img1", "img2")}
_DEPTH_NAMES = {
    schema: tuple(f"{view}.{extension}" for view in DEPTH_VIEWS) for schema, extension in DEPTH_FORMAT_BY_SCHEMA.items()
}


def decode_sample(key: str, fields: dict[str, bytes], where: str = "") -> dict:
    """Raw fields (bytes or memoryviews) -> ``{"__key__", "img1", "img2" (RGB uint8), "depth1",
    "depth2" (float32 m), "meta" (dict)}``; raises ShardReadError naming the member that is
    missing or does not decode."""
    prefix = f"{where}: " if where else ""
    images = {}
    for view, candidates in _IMAGE_NAMES.items():
        names = [name for name in candidates if name in fields]
        if len(names) != 1:
            raise ShardReadError(f"{prefix}sample {key!r} needs exactly one of {view}.jpg/{view}.png, has {sorted(fields)}")
        try:
            images[view] = decode_rgb(fields[names[0]])
        except ValueError as err:
            raise ShardReadError(f"{prefix}member {key}.{names[0]}: {err}") from err
    if META_FIELD not in fields:
        raise ShardReadError(f"{prefix}sample {key!r} has no meta.json (members: {sorted(fields)})")
    try:
        meta = orjson.loads(fields[META_FIELD])  # ~8x faster than json.loads, same values
    except orjson.JSONDecodeError as err:
        raise ShardReadError(f"{prefix}member {key}.meta.json is not valid JSON: {err}") from err
    problems = meta_problems(meta)
    if problems:
        raise ShardReadError(f"{prefix}member {key}.meta.json breaks the schema: {'; '.join(problems)}")
    sample = {"__key__": key, **images, "meta": meta}
    shape = (meta["height"], meta["width"])
    for view, name in zip(DEPTH_VIEWS, _DEPTH_NAMES[meta["schema_version"]]):
        if name not in fields:
            raise ShardReadError(
                f"{prefix}sample {key!r} has no {name} (schema_version {meta['schema_version']}; members: {sorted(fields)})"
            )
        try:
            sample[view] = decode_depth(fields[name], meta["depth_scale"], shape)
        except ValueError as err:
            raise ShardReadError(f"{prefix}member {key}.{name}: {err}") from err
    for view, depth in (("img1", "depth1"), ("img2", "depth2")):
        if sample[view].shape[:2] != shape or sample[depth].shape != shape:
            raise ShardReadError(
                f"{prefix}sample {key!r}: {view}/{depth} sizes {sample[view].shape[:2]}/{sample[depth].shape} "
                f"differ from meta.json's {shape}"
            )
    return sample


def read_shard(path: Path) -> Iterator[dict]:
    """Decoded samples of one shard (see :func:`decode_sample`), decoded straight from the mapped
    file (no member is copied before it is decoded)."""
    where = f"shard {path}"
    for key, fields in _iter_samples(path, views=True):
        yield decode_sample(key, fields, where=where)


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


_META_NAMES = tuple(META_SCHEMA)
_MATRIX_ROWS = [rows for rows, _cols in MATRIX_SHAPES.values()]
_MATRIX_ROW_LENGTHS = [cols for rows, cols in MATRIX_SHAPES.values() for _ in range(rows)]
_NUMBER_TYPES = (int, float)
# Field-type tuples (type(meta[name]) per META_SCHEMA field, in order) already found valid.
_VALID_TYPE_ROWS: set[tuple[type, ...]] = set()


def _types_valid(types: tuple[type, ...]) -> bool:
    """Whether a tuple of exact field types satisfies META_SCHEMA (remembered when it does)."""
    if types in _VALID_TYPE_ROWS:
        return True
    valid = all(kind is not bool and issubclass(kind, META_SCHEMA[name]) for name, kind in zip(_META_NAMES, types))
    if valid and len(_VALID_TYPE_ROWS) < 64:
        _VALID_TYPE_ROWS.add(types)
    return valid


def _meta_plainly_valid(meta: object) -> bool:
    """Fast acceptance of a valid meta.json document: the same rules as :func:`meta_problems`
    at a fraction of its cost per sample (one tuple of field types compared with those already
    found valid, one finite sum over the matrices). False means "not shown valid": the full
    check then runs and names the problems."""
    if type(meta) is not dict:
        return False
    if not _types_valid(tuple(map(type, map(meta.get, _META_NAMES)))):
        return False
    schema = meta["schema_version"]
    if schema not in DEPTH_FORMAT_BY_SCHEMA:
        return False
    if schema >= 3 and not (type(meta.get("information1")) in _NUMBER_TYPES and type(meta.get("information2")) in _NUMBER_TYPES):
        return False
    if not (meta["width"] > 0 and meta["height"] > 0 and meta["depth_scale"] > 0):
        return False
    matrices = [meta[name] for name in MATRIX_SHAPES]
    try:
        if list(map(len, matrices)) != _MATRIX_ROWS:
            return False
        rows = [row for matrix in matrices for row in matrix]
        if list(map(len, rows)) != _MATRIX_ROW_LENGTHS or set(map(type, rows)) != {list}:
            return False
        return math.isfinite(sum(map(sum, rows)))  # NaN or an infinity anywhere makes the sum non-finite
    except (TypeError, OverflowError):  # a non-number in a row
        return False


def meta_problems(meta: object) -> list[str]:
    """Everything wrong with a meta.json document (empty list = valid)."""
    if _meta_plainly_valid(meta):
        return []
    if not isinstance(meta, dict):
        return [f"meta.json must be an object, got {type(meta).__name__}"]
    problems = [
        f"missing {name!r}" if name not in meta else f"{name!r} has type {type(meta[name]).__name__}"
        for name, kind in META_SCHEMA.items()
        if name not in meta or type(meta[name]) is bool or not isinstance(meta[name], kind)
    ]
    if problems:
        return problems
    if meta["schema_version"] not in DEPTH_FORMAT_BY_SCHEMA:
        problems.append(f"schema_version {meta['schema_version']} (this code reads {', '.join(map(str, READABLE_SCHEMAS))})")
    elif meta["schema_version"] >= 3:
        for name in ("information1", "information2"):
            if isinstance(meta.get(name), bool) or not isinstance(meta.get(name), (int, float)):
                problems.append(f"missing {name!r}" if name not in meta else f"{name!r} has type {type(meta[name]).__name__}")
    for name, shape in MATRIX_SHAPES.items():
        if _plainly_finite_matrix(meta[name], shape):
            continue
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


def _plainly_finite_matrix(value: object, shape: tuple[int, int]) -> bool:
    """Fast acceptance of a JSON matrix (lists of numbers, finite sum); False = check it in full."""
    rows, cols = shape
    if type(value) is not list or len(value) != rows or [len(row) if type(row) is list else -1 for row in value] != [cols] * rows:
        return False
    try:
        return math.isfinite(sum(map(sum, value)))
    except TypeError:
        return False

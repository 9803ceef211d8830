"""Shard encoding, atomic writing and reading (plain tar, stock webdataset, our reader)."""

from __future__ import annotations

import io
import json
import math
import tarfile

import cv2
import numpy as np
import pytest

from rendering.camera import intrinsics_from_fov, look_at
from rendering.pair import CovisScores, PairRecord
from rendering.shards import (
    ShardReadError,
    ShardWriter,
    decode_depth,
    decode_rgb,
    encode_depth,
    encode_depth_png,
    encode_rgb,
    encode_sample,
    file_sha256,
    iter_raw_samples,
    iter_tar_members,
    meta_problems,
    read_shard,
    shard_path,
)


def make_record(pair_index: int, size: int = 32, seed: int = 3) -> PairRecord:
    rng = np.random.default_rng(pair_index)
    img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 8.0, size=(size, size)).astype(np.float32)
    depth[0, :4] = 0.0
    K = intrinsics_from_fov(size, size, 60.0)
    return PairRecord(
        scene_id="room-a",
        scene_uri="procedural:7",
        pair_index=pair_index,
        seed=seed,
        renderer="embedded",
        img1=img,
        img2=img[:, ::-1].copy(),
        depth1=depth,
        depth2=depth[::-1].copy(),
        K1=K,
        K2=K,
        cam2world1=look_at(np.array([0.0, 1.5, 0.0]), np.array([1.0, 1.4, 2.0])),
        cam2world2=look_at(np.array([0.5, 1.6, 0.0]), np.array([1.0, 1.4, 2.0])),
        covis=CovisScores(0.6, 0.55, 0.7, 0.65),
        attempts=4,
        rejections={"low_covis": 3},
    )


def write_shard(path, indices, image_format="jpg"):
    with ShardWriter(path) as writer:
        for i in indices:
            writer.write(f"room-a-{i:08d}", encode_sample(make_record(i), f"room-a-{i:08d}", image_format))
        return writer.close()


def test_rgb_roundtrip_keeps_channel_order():
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0] = 255  # pure red
    back = decode_rgb(encode_rgb(img, "png"))
    assert np.array_equal(back, img)
    jpg = decode_rgb(encode_rgb(img, "jpg", 95))
    assert jpg[..., 0].mean() > 240 and jpg[..., 2].mean() < 15
    # A strided view (as a renderer's flipped read-back can be) encodes as its contents.
    varied = np.random.default_rng(1).integers(0, 256, size=(16, 12, 3), dtype=np.uint8)
    view = varied[::-1, ::2]
    assert np.array_equal(decode_rgb(encode_rgb(view, "png")), view)
    assert encode_rgb(view, "jpg", 90) == cv2.imencode(".jpg", np.ascontiguousarray(view[..., ::-1]),
                                                       [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_shard_roundtrip_and_determinism(tmp_path):
    a = write_shard(shard_path(tmp_path / "a", "train", 0), range(3), "png")
    b = write_shard(shard_path(tmp_path / "b", "train", 0), range(3), "png")
    assert a.path.name == "pairs-000000.tar" and a.path.is_file()
    assert a.sha256 == b.sha256 == file_sha256(a.path)
    assert a.size == a.path.stat().st_size
    assert [p.name for p in a.path.parent.iterdir()] == ["pairs-000000.tar"]  # no temporary left
    samples = list(read_shard(a.path))
    assert [s["__key__"] for s in samples] == [f"room-a-{i:08d}" for i in range(3)]
    rec = make_record(1)
    assert np.array_equal(samples[1]["img1"], rec.img1)  # PNG is lossless
    np.testing.assert_allclose(samples[1]["depth1"], rec.depth1, atol=0.0006)
    assert samples[1]["depth1"][0, 0] == 0.0
    assert samples[1]["meta"]["K1"] == np.asarray(rec.K1).tolist()


def test_plain_tar_and_stock_webdataset_read_every_field(tmp_path):
    import webdataset as wds

    info = write_shard(shard_path(tmp_path, "train", 0), range(2), "jpg")
    with tarfile.open(info.path) as tar:
        names = tar.getnames()
    assert names[:5] == [f"room-a-00000000.{f}" for f in ("img1.jpg", "img2.jpg", "depth1.npy", "depth2.npy", "meta.json")]
    ds = wds.WebDataset(str(info.path), shardshuffle=False).decode("rgb8")  # no custom handler needed
    samples = list(ds)
    assert [s["__key__"] for s in samples] == ["room-a-00000000", "room-a-00000001"]
    ours = list(read_shard(info.path))
    for i, sample in enumerate(samples):
        rec = make_record(i)
        for view in ("img1.jpg", "img2.jpg"):
            assert sample[view].shape == (32, 32, 3) and sample[view].dtype == np.uint8
        assert np.array_equal(sample["img1.jpg"], ours[i]["img1"])  # same RGB order as our reader
        assert np.array_equal(sample["img2.jpg"], ours[i]["img2"])
        for name, depth in (("depth1.npy", rec.depth1), ("depth2.npy", rec.depth2)):
            assert sample[name].dtype == np.uint16
            assert np.array_equal(sample[name], np.rint(depth / 0.001).astype(np.uint16))
        assert sample["meta.json"]["pair_index"] == i and sample["meta.json"]["scene_id"] == "room-a"


@pytest.mark.parametrize("spec", ["rgb", "rgb8", "pil", "l8", "torchrgb", "torch"])
def test_stock_webdataset_image_specs_never_misread_depth(tmp_path, spec):
    """Whatever image spec a user picks, depth comes back as the exact uint16 units."""
    import webdataset as wds

    info = write_shard(shard_path(tmp_path, "train", 0), range(2), "jpg")
    samples = list(wds.WebDataset(str(info.path), shardshuffle=False).decode(spec))
    assert len(samples) == 2
    for i, sample in enumerate(samples):
        rec = make_record(i)
        for name, depth in (("depth1.npy", rec.depth1), ("depth2.npy", rec.depth2)):
            assert isinstance(sample[name], np.ndarray), f"{spec}: {name} decoded to {type(sample[name])}"
            assert sample[name].dtype == np.uint16 and sample[name].shape == depth.shape
            assert np.array_equal(sample[name] * np.float32(sample["meta.json"]["depth_scale"]),
                                  read_shard_depth(info.path, i, name))


def read_shard_depth(path, index, name):
    return list(read_shard(path))[index][name.split(".")[0]]


def test_schema_1_shards_with_png_depth_still_read(tmp_path):
    """Shards written before depth moved to .npy (schema 1, 16-bit PNG) decode to the same metres."""
    rec = make_record(0)
    fields = encode_sample(rec, "room-a-00000000")
    meta = json.loads(fields.pop("meta.json"))
    meta["schema_version"] = 1
    legacy = {
        "img1.jpg": fields["img1.jpg"],
        "img2.jpg": fields["img2.jpg"],
        "depth1.png": encode_depth_png(rec.depth1, 0.001),
        "depth2.png": encode_depth_png(rec.depth2, 0.001),
        "meta.json": json.dumps(meta).encode(),
    }
    path = tmp_path / "pairs-000000.tar"
    with ShardWriter(path) as writer:
        writer.write("room-a-00000000", legacy)
        writer.close()
    (old,) = list(read_shard(path))
    assert old["meta"]["schema_version"] == 1
    np.testing.assert_allclose(old["depth1"], rec.depth1, atol=0.0006)
    new = decode_depth(encode_depth(rec.depth1, 0.001), 0.001, rec.depth1.shape)
    assert np.array_equal(old["depth1"], new)  # both schemas give the same metres
    meta["schema_version"] = 2  # a schema-2 sample must have .npy depth: named, not guessed
    legacy["meta.json"] = json.dumps(meta).encode()
    with ShardWriter(path) as writer:
        writer.write("room-a-00000000", legacy)
        writer.close()
    with pytest.raises(ShardReadError, match=r"has no depth1\.npy \(schema_version 2"):
        list(read_shard(path))


def test_depth_npy_from_other_writers_reads_and_bad_arrays_are_named():
    depth = make_record(0).depth1
    units = np.rint(depth / 0.001).astype(np.uint16)
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(units))  # a valid .npy that is not our byte layout
    np.testing.assert_array_equal(decode_depth(buffer.getvalue(), 0.001, units.shape), units * np.float32(0.001))
    buffer = io.BytesIO()
    np.save(buffer, units.astype(np.float32))
    with pytest.raises(ValueError, match="uint16"):
        decode_depth(buffer.getvalue(), 0.001, units.shape)
    with pytest.raises(ValueError, match=".npy"):
        decode_depth(encode_depth(depth, 0.001)[:-10], 0.001, None)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_reader_matches_tarfile_for_long_names_and_formats(tmp_path, fmt):
    path = tmp_path / "x.tar"
    members = {("d" * 60 + "/") * (fmt == tarfile.USTAR_FORMAT) + "k" * 90 + ".img1.jpg": b"a" * 700,
               "s.meta.json": b"{}", "e.depth1.npy": b""}
    if fmt != tarfile.USTAR_FORMAT:
        members["l" * 150 + ".depth2.npy"] = b"b" * 513  # longer than a ustar name field
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert list(iter_tar_members(path)) == list(members.items())


def test_tar_reader_refuses_a_corrupt_header_and_directories(tmp_path):
    info = write_shard(shard_path(tmp_path, "train", 0), range(2))
    data = bytearray(info.path.read_bytes())
    data[5] ^= 0xFF  # first member's name, checksum now wrong
    info.path.write_bytes(bytes(data))
    with pytest.raises(ShardReadError, match="bad checksum"):
        list(iter_raw_samples(info.path))
    path = tmp_path / "dir.tar"
    with tarfile.open(path, "w") as tar:
        directory = tarfile.TarInfo("folder")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
    with pytest.raises(ShardReadError, match="'folder/' is not a regular file"):
        list(iter_raw_samples(path))


def test_aborted_writer_leaves_nothing(tmp_path):
    final = shard_path(tmp_path, "val", 4)
    with pytest.raises(RuntimeError):
        with ShardWriter(final) as writer:
            writer.write("room-a-00000000", encode_sample(make_record(0), "room-a-00000000"))
            raise RuntimeError("render crashed")
    assert list(final.parent.iterdir()) == []


def test_bad_keys_and_duplicates_are_refused(tmp_path):
    with ShardWriter(tmp_path / "pairs-000000.tar") as writer:
        with pytest.raises(ValueError, match="no '.'"):
            writer.write("a.b", {})
        writer.write("k", {"meta.json": b"{}"})
        with pytest.raises(ValueError, match="duplicate"):
            writer.write("k", {"meta.json": b"{}"})
        writer.abort()


def test_truncated_shard_names_shard_and_member(tmp_path):
    info = write_shard(shard_path(tmp_path, "train", 0), range(3))
    data = info.path.read_bytes()
    info.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardReadError) as err:
        list(read_shard(info.path))
    assert "pairs-000000.tar" in str(err.value) and "room-a-" in str(err.value)


def test_corrupt_image_and_bad_meta_are_named(tmp_path):
    path = tmp_path / "pairs-000000.tar"
    rec = make_record(0)
    fields = encode_sample(rec, "room-a-00000000")
    fields["img2.jpg"] = b"not a jpeg"
    with ShardWriter(path) as writer:
        writer.write("room-a-00000000", fields)
        writer.close()
    with pytest.raises(ShardReadError, match=r"room-a-00000000\.img2\.jpg"):
        list(read_shard(path))
    fields = encode_sample(rec, "room-a-00000000")
    meta = json.loads(fields["meta.json"])
    del meta["K2"]
    fields["meta.json"] = json.dumps(meta).encode()
    with ShardWriter(path) as writer:
        writer.write("room-a-00000000", fields)
        writer.close()
    with pytest.raises(ShardReadError, match="missing 'K2'"):
        list(read_shard(path))


def test_missing_shard_is_a_clear_error(tmp_path):
    with pytest.raises(ShardReadError, match="does not exist"):
        list(iter_raw_samples(tmp_path / "pairs-000009.tar"))


# ------------------------------------------------------------------ the reader's contract, bit for bit


def reference_read(path) -> list[dict]:
    """What read_shard must return, spelled out with stock readers (tarfile, OpenCV to BGR and a
    channel flip, numpy.load, json) and the float32 conversion of the first .npy reader
    (units.astype(float32), then *= float32(depth_scale))."""
    groups: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, _, field = member.name.partition(".")
            groups.setdefault(key, {})[field] = tar.extractfile(member).read()
    samples = []
    for key, fields in groups.items():
        meta = json.loads(fields["meta.json"])
        sample = {"__key__": key, "meta": meta}
        for view in ("img1", "img2"):
            (name,) = [n for n in fields if n.startswith(view + ".")]
            bgr = cv2.imdecode(np.frombuffer(fields[name], np.uint8), cv2.IMREAD_COLOR)
            sample[view] = np.ascontiguousarray(bgr[:, :, ::-1])
        for view in ("depth1", "depth2"):
            if f"{view}.npy" in fields:
                units = np.load(io.BytesIO(fields[f"{view}.npy"]), allow_pickle=False)
            else:
                units = cv2.imdecode(np.frombuffer(fields[f"{view}.png"], np.uint8), cv2.IMREAD_UNCHANGED)
            metres = units.astype(np.float32)
            metres *= np.float32(meta["depth_scale"])
            sample[view] = metres
        samples.append(sample)
    return samples


def write_schema_shard(path, schema: int, image_format: str, n: int = 3):
    """A shard as the writer of ``schema`` wrote it: 1 = 16-bit PNG depth, 2 = .npy depth,
    3 = .npy depth + information1/2 in meta.json (today's writer)."""
    with ShardWriter(path) as writer:
        for i in range(n):
            key = f"room-a-{i:08d}"
            rec = make_record(i, size=24 + 8 * i)  # sizes differ within the shard
            fields = encode_sample(rec, key, image_format, depth_scale=0.00025 * (i + 1))
            meta = json.loads(fields.pop("meta.json"))
            if schema < 3:
                meta = {k: v for k, v in meta.items() if k not in ("information1", "information2")}
            meta["schema_version"] = schema
            if schema == 1:
                for view, depth in (("depth1", rec.depth1), ("depth2", rec.depth2)):
                    del fields[f"{view}.npy"]
                    fields[f"{view}.png"] = encode_depth_png(depth, meta["depth_scale"])
            fields["meta.json"] = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
            writer.write(key, fields)
        return writer.close()


@pytest.mark.parametrize("image_format", ["jpg", "png"])
@pytest.mark.parametrize("schema", [1, 2, 3])
def test_read_shard_equals_the_reference_decoder_bit_for_bit(tmp_path, schema, image_format):
    info = write_schema_shard(tmp_path / "pairs-000000.tar", schema, image_format)
    ours, reference = list(read_shard(info.path)), reference_read(info.path)
    assert [s["__key__"] for s in ours] == [s["__key__"] for s in reference] == [f"room-a-{i:08d}" for i in range(3)]
    for got, want in zip(ours, reference):
        assert set(got) == {"__key__", "img1", "img2", "depth1", "depth2", "meta"}
        assert got["meta"] == want["meta"] and got["meta"]["schema_version"] == schema
        for name in ("img1", "img2", "depth1", "depth2"):
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            assert got[name].tobytes() == want[name].tobytes(), name  # same bits, not just close
            assert got[name].flags.writeable and got[name].flags.c_contiguous  # not a view of the shard file
        assert got["depth1"].shape == (got["meta"]["height"], got["meta"]["width"])
        assert np.count_nonzero(got["depth1"] == 0) >= 4  # invalid pixels stay 0


@pytest.mark.parametrize("scale", [0.001, 0.00025, 1 / 1024, 0.1, 1.0])
def test_depth_conversion_equals_astype_then_multiply_for_every_unit_value(scale):
    units = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    data = b"".join([encode_depth(np.zeros((256, 256), np.float32), 0.001)[:-2 * units.size], units.tobytes()])
    expected = units.astype(np.float32)
    expected *= np.float32(scale)
    for shape in ((256, 256), None):  # header matched as bytes, or read by numpy's reader
        got = decode_depth(data, scale, shape)
        assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()
        assert decode_depth(memoryview(data), scale, shape).tobytes() == expected.tobytes()


def test_raw_samples_are_bytes_and_an_empty_file_has_none(tmp_path):
    info = write_shard(shard_path(tmp_path, "train", 0), range(2))
    with tarfile.open(info.path) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    got = [(f"{key}.{field}", data) for key, fields in iter_raw_samples(info.path) for field, data in fields.items()]
    assert got == expected and all(type(data) is bytes for _name, data in got)
    assert all(type(data) is bytes for _name, data in iter_tar_members(info.path))
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    assert list(iter_raw_samples(empty)) == [] and list(read_shard(empty)) == []


def broken_metas() -> list[tuple[str, object, str]]:
    """(what, meta.json document, expected problem) for documents the reader must refuse."""
    good = make_record(0).meta()
    cases: list[tuple[str, object, str]] = [("a list", [good], "must be an object")]

    def changed(what: str, problem: str, **fields) -> None:
        cases.append((what, {**good, **fields}, problem))

    for name in ("K2", "width", "scene_id", "rejections", "covis", "schema_version"):
        doc = dict(good)
        del doc[name]
        cases.append((f"no {name}", doc, f"missing {name!r}"))
    changed("width as text", "'width' has type str", width="24")
    changed("width as bool", "'width' has type bool", width=True)
    changed("covis as null", "'covis' has type NoneType", covis=None)
    changed("attempts as float", "'attempts' has type float", attempts=4.0)
    changed("K1 as a dict", "'K1' has type dict", K1={"a": 1})
    changed("NaN in K1", "'K1' must be a finite 3x3 matrix", K1=[[math.nan, 0, 0], [0, 1, 0], [0, 0, 1]])
    changed("inf in cam2world2", "'cam2world2' must be a finite 4x4", cam2world2=[[math.inf] * 4] * 4)
    changed("K2 2x3", "'K2' must be a finite 3x3 matrix, got shape (2, 3)", K2=[[1, 0, 0], [0, 1, 0]])
    changed("K2 ragged", "'K2' is not a numeric matrix", K2=[[1, 0, 0], [0, 1], [0, 0, 1]])
    changed("nested K1", "'K1' is not a numeric matrix", K1=[[[1], [0], [0]], [0, 1, 0], [0, 0, 1]])
    changed("zero width", "width, height and depth_scale must be positive", width=0)
    changed("negative scale", "width, height and depth_scale must be positive", depth_scale=-0.001)
    changed("schema 9", "schema_version 9 (this code reads 1, 2, 3)", schema_version=9)
    changed("no information1", "missing 'information1'", information1=None)
    changed("information2 as bool", "'information2' has type bool", information2=False)
    cases[-2][1].pop("information1")
    return cases


@pytest.mark.parametrize("what, meta, problem", broken_metas(), ids=[c[0] for c in broken_metas()])
def test_malformed_meta_is_refused_naming_shard_member_and_key(tmp_path, what, meta, problem):
    problems = meta_problems(meta)
    assert problems and any(problem in p for p in problems), problems
    for _ in range(2):  # also after a valid sample of the same shard was accepted
        assert any(problem in p for p in meta_problems(meta))
    path = tmp_path / "pairs-000007.tar"
    fields = encode_sample(make_record(0), "room-a-00000000")
    fields["meta.json"] = json.dumps(meta).encode()
    with ShardWriter(path) as writer:
        writer.write("room-a-00000000", encode_sample(make_record(1), "room-a-00000000"))
        writer.write("room-a-00000001", fields)
        writer.close()
    with pytest.raises(ShardReadError) as err:
        list(read_shard(path))
    message = str(err.value)
    if b"NaN" in fields["meta.json"] or b"Infinity" in fields["meta.json"]:
        problem = "is not valid JSON"  # NaN/Infinity is not JSON: the parser refuses it before the schema check
    assert "pairs-000007.tar" in message and "room-a-00000001.meta.json" in message and problem in message


def test_valid_meta_variants_are_accepted():
    good = make_record(0).meta()
    assert meta_problems(good) == []
    for variant in ({**good, "covis": 1, "depth_scale": 1}, {**good, "schema_version": 2},
                    {**good, "K1": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "extra_field": [1, "x"]},
                    {**good, "cam2world1": [[1e308, 1e308, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}):
        assert meta_problems(variant) == [], variant


def _tarfile_shard(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    """The bytes tarfile itself writes for these samples with the shard's header fields."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for key, fields in samples:
            for name, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{name}")
                info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = (
                    len(data), 0o444, 0, 0, 0, "", "")
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("sizes", [[0], [1, 511, 512, 513], [10240 - 3 * 512], [123_457, 7, 0, 4096]])
def test_shard_writer_writes_the_bytes_tarfile_writes(tmp_path, sizes):
    # Short and long (GNU long-name) keys, empty and block-sized members, and archive ends on
    # both sides of a 20-block record boundary: the writer builds headers itself.
    rng = np.random.default_rng(len(sizes))
    samples = []
    for i, key in enumerate(["a", "room-a-00000007", "s" * 88, "x" * 95 + "-long"]):
        fields = {f"img{j + 1}.jpg": rng.integers(0, 256, size, dtype=np.uint8).tobytes()
                  for j, size in enumerate(sizes[i % len(sizes):][:2])}
        fields["meta.json"] = json.dumps({"i": i}).encode()
        samples.append((key, fields))
    path = tmp_path / "pairs-000000.tar"
    with ShardWriter(path) as writer:
        for key, fields in samples:
            writer.write(key, fields)
        info = writer.close()
    assert path.read_bytes() == _tarfile_shard(samples)
    assert info.size == path.stat().st_size
    assert [k for k, _ in samples] == list(info.keys)

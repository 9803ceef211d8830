"""Shard encoding, atomic writing and reading (plain tar, stock webdataset, our reader)."""

from __future__ import annotations

import io
import json
import tarfile

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

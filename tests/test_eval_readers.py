"""External-dataset readers (NYUv2, MPI-Sintel) against tiny files written in the official formats."""

import struct

import h5py
import numpy as np
import pytest

from external_files import flo_bytes as _flo_bytes
from external_files import write_nyuv2 as _write_nyu
from external_files import write_nyuv2_splits, write_sintel_scene
from evaluation.readers import NYUv2, SintelFlow, read_flo, read_nyuv2_split, write_flo


def test_nyuv2_reads_labeled_mat_and_split(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 6, 8
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    depths = [rng.uniform(0.5, 10, (h, w)).astype(np.float32) for _ in range(4)]
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_nyu(mat, images, depths)
    split = tmp_path / "splits.mat"
    write_nyuv2_splits(split, [1, 2, 4], [3])

    with NYUv2(mat) as ds:
        assert len(ds) == 4
        img, depth = ds[1]
        assert img.shape == (h, w, 3) and depth.shape == (h, w)
        assert np.array_equal(img, images[1]) and np.allclose(depth, depths[1])
    assert read_nyuv2_split(split)["train"].tolist() == [0, 1, 3]
    with NYUv2.with_split(mat, split, "test") as test:
        assert len(test) == 1
        assert np.array_equal(test[0][0], images[2])


def test_nyuv2_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="NYUv2 file not found"):
        NYUv2(tmp_path / "missing.mat")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"MATLAB 5.0 MAT-file, not hdf5")
    with pytest.raises(ValueError, match="not an HDF5"):
        NYUv2(junk)
    partial = tmp_path / "partial.mat"
    with h5py.File(partial, "w") as f:
        f["images"] = np.zeros((1, 3, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="'depths'"):
        NYUv2(partial)


def test_read_flo_official_bytes(tmp_path):
    flow = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2)
    path = tmp_path / "frame_0001.flo"
    path.write_bytes(_flo_bytes(flow))
    assert struct.unpack("<f", b"PIEH")[0] == pytest.approx(202021.25)
    assert np.array_equal(read_flo(path), flow)
    write_flo(tmp_path / "copy.flo", flow)
    assert (tmp_path / "copy.flo").read_bytes() == path.read_bytes()


def test_read_flo_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(b"XXXX" + struct.pack("<ii", 2, 2) + bytes(32))
    with pytest.raises(ValueError, match="not a .flo"):
        read_flo(bad)
    trunc = tmp_path / "trunc.flo"
    trunc.write_bytes(_flo_bytes(np.zeros((4, 4, 2)))[:-8])
    with pytest.raises(ValueError, match="truncated"):
        read_flo(trunc)


def test_sintel_pairs(tmp_path):
    rng = np.random.default_rng(1)
    h, w = 4, 6
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    flows = [rng.normal(size=(h, w, 2)).astype(np.float32) for _ in range(2)]
    occ = np.zeros((h, w), np.uint8)
    occ[0, 0] = 255
    invalid = np.zeros((h, w), np.uint8)
    invalid[1, :] = 255
    write_sintel_scene(tmp_path, "alley_1", frames, flows, masks={"occlusions": {2: occ}, "invalid": {2: invalid}})

    ds = SintelFlow(tmp_path, "final")
    assert len(ds) == 2 and ds.scenes == ["alley_1"]
    s = ds[1]
    assert s.frame == 2
    assert np.array_equal(s.img1, frames[1]) and np.array_equal(s.img2, frames[2])
    assert np.array_equal(s.flow, flows[1])
    assert s.occluded[0, 0] and s.occluded.sum() == 1
    assert not s.valid[1].any() and s.valid.sum() == h * w - w
    assert not ds[0].occluded.any() and ds[0].valid.all()
    with pytest.raises(ValueError, match="allowed: clean, final"):
        SintelFlow(tmp_path, "albedo")
    (tmp_path / "training" / "clean" / "alley_1" / "frame_0003.png").unlink()
    with pytest.raises(FileNotFoundError, match="frame_0003.png"):
        SintelFlow(tmp_path, "clean")

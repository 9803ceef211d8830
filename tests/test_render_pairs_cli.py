"""`crocopipe render-pairs` end to end on a tiny GLB room, and the contact sheet it draws."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from rendering.contact_sheet import colorize_depth, contact_sheet, write_contact_sheet
from rendering.pair import CovisScores, PairRecord
from test_sampling import _furnished_room

runner = CliRunner()
SIZE = 40


@pytest.fixture(scope="module")
def room_glb(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "Small Room.glb"
    _furnished_room().export(path)
    return path


def _run(*args: str):
    return runner.invoke(app, ["render-pairs", *args])


def _tiny(room_glb, out, *extra: str):
    return _run(str(room_glb), "--out", str(out), "--num-pairs", "2", "--seed", "3", "--width", str(SIZE),
                "--height", str(SIZE), "--min-covis", "0.3", *extra)


def test_render_pairs_writes_the_schema_files_and_a_contact_sheet(room_glb, tmp_path):
    out = tmp_path / "pairs"
    result = _tiny(room_glb, out)
    assert result.exit_code == 0, result.output
    keys = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert keys == ["small-room-00000000", "small-room-00000001"]
    for key in keys:
        files = sorted(p.name for p in (out / key).iterdir())
        assert files == ["depth1.npy", "depth2.npy", "img1.jpg", "img2.jpg", "meta.json"]
        meta = json.loads((out / key / "meta.json").read_text())
        assert meta["scene_id"] == "small-room" and meta["seed"] == 3 and meta["width"] == SIZE
        assert 0.3 <= meta["covis"] <= 1.0 and meta["attempts"] >= 2
        img = cv2.imread(str(out / key / "img1.jpg"))
        assert img.shape == (SIZE, SIZE, 3)
        depth = np.load(out / key / "depth1.npy")
        assert depth.dtype == np.uint16 and depth.shape == (SIZE, SIZE)
        # uint16 millimetres: a valid fraction >= 0.7 and depths inside the 6 x 3 x 5 m room.
        assert np.count_nonzero(depth) / depth.size == pytest.approx(meta["valid1"], abs=1e-9)
        assert 0 < depth.max() * meta["depth_scale"] < 8.0
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 100
    assert "wrote 2 pair(s)" in result.output


def test_same_seed_gives_identical_files(room_glb, tmp_path):
    assert _tiny(room_glb, tmp_path / "a").exit_code == 0
    assert _tiny(room_glb, tmp_path / "b").exit_code == 0
    for name in ("img1.jpg", "img2.jpg", "depth2.npy", "meta.json"):
        a = (tmp_path / "a" / "small-room-00000001" / name).read_bytes()
        assert a == (tmp_path / "b" / "small-room-00000001" / name).read_bytes()


def test_refuses_a_non_empty_output_folder_unless_overwrite(room_glb, tmp_path):
    out = tmp_path / "pairs"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("mine")
    result = _tiny(room_glb, out)
    assert result.exit_code == 2
    assert "not empty" in result.output and "--overwrite" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    result = _tiny(room_glb, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert keep.read_text() == "mine" and (out / "small-room-00000000" / "meta.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--min-covis", "0.9", "--max-covis", "0.5"), "min_covis"),
        (("--width", "2"), "width"),
        (("--covis-method", "magic"), "covis_method"),
        (("--backend", "nope"), "unknown renderer backend"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(room_glb, tmp_path, args, message):
    result = _run(str(room_glb), "--out", str(tmp_path / "o"), "-n", "1", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "o").exists()


def test_missing_scene_file_exits_2_naming_it(tmp_path):
    result = _run(str(tmp_path / "missing.glb"), "--out", str(tmp_path / "o"), "-n", "1")
    assert result.exit_code == 2
    assert "missing.glb" in result.output


def test_unsatisfiable_threshold_exits_1_naming_scene_and_reasons(room_glb, tmp_path):
    result = _tiny(room_glb, tmp_path / "o", "--min-covis", "1.0", "--max-covis", "1.0", "--max-references", "2",
                   "--max-candidates", "5")
    assert result.exit_code == 1
    assert "small-room" in result.output and "covis_below_min" in result.output
    assert "2 of 2 pair(s)" in result.output


# --- contact sheet ---------------------------------------------------------------------------


def _record(index: int) -> PairRecord:
    rng = np.random.default_rng(index)
    depth = rng.uniform(0.5, 4.0, (24, 32)).astype(np.float32)
    depth[:4] = 0.0
    K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    return PairRecord(
        scene_id="s", scene_uri="procedural:1", pair_index=index, seed=0, renderer="embedded",
        img1=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), img2=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
        depth1=depth, depth2=depth, K1=K, K2=K, cam2world1=np.eye(4), cam2world2=np.eye(4),
        covis=CovisScores(0.6, 0.7, 0.8, 0.9), attempts=3,
    )


def test_contact_sheet_grid_holds_every_pair(tmp_path):
    records = [_record(i) for i in range(5)]
    one_column = contact_sheet(records, columns=1)
    two_columns = contact_sheet(records, columns=2)
    assert one_column.dtype == np.uint8 and one_column.shape[2] == 3
    assert one_column.shape[0] > two_columns.shape[0] and one_column.shape[1] < two_columns.shape[1]
    tuples = contact_sheet([(r.img1, r.img2, "label") for r in records] + [(records[0].img1, records[0].img2,
                                                                             records[0].covis, "x")])
    assert tuples.shape[0] == two_columns.shape[0]
    path = write_contact_sheet(records, tmp_path / "sheet.png", columns=3)
    assert cv2.imread(str(path)).shape[:2] == contact_sheet(records, columns=3).shape[:2]


def test_contact_sheet_rejects_bad_entries():
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([])
    with pytest.raises(ValueError, match="entry 0"):
        contact_sheet([("not", "a pair")])
    r = _record(0)
    with pytest.raises(ValueError, match="entry 0 img1"):
        contact_sheet([(r.img1.astype(np.float32), r.img2, "x")])


def test_colorized_depth_is_black_where_invalid_and_spans_the_map():
    depth = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    rgb = colorize_depth(depth)
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert len({tuple(p) for p in rgb.reshape(-1, 3)[1:]}) == 3


def test_contact_sheet_sample_item_adds_depth_and_covisibility_panels():
    from rendering.contact_sheet import SheetItem, covisibility_overlay

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    depth = np.full((16, 16), 2.0, np.float32)
    K = np.array([[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]])
    pose = np.eye(4)
    same = covisibility_overlay(img, depth, K, pose, depth, K, pose)
    assert np.array_equal(same, img)  # the same view sees every pixel: colours unchanged
    moved = pose.copy()
    moved[0, 3] = 1.5  # 1.5 m to the right: the left part of view 1 leaves view 2
    overlay = covisibility_overlay(img, depth, K, pose, depth, K, moved)
    assert (overlay[:, :4] != img[:, :4]).any() and np.array_equal(overlay[:, -4:], img[:, -4:])
    sheet = contact_sheet([SheetItem(img, img, depth, "a", overlay)])
    assert sheet.shape[1] > 4 * 128  # image 1, image 2, depth, overlay

"""Capture readers: rendered sequences written in each dataset's layout read back exactly."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rendering.captures import CaptureError, discover_sequences, load_depth, load_rgb, read_sequence
from rendering.captures.arkitscenes import angle_axis_pose_to_cam2world
from rendering.captures.record import rgb_in_depth_camera, to_integer_centres
from rendering.captures.tum import TUM_CAMERAS, quaternion_xyzw_to_matrix
from rendering.backends.embedded import EmbeddedRenderer
from tests.capture_layouts import (
    render_sequence,
    write_arkitscenes,
    write_frames_jsonl,
    write_scannet,
    write_tum,
)


@pytest.fixture(scope="module")
def rendered(rendered_capture_sequence):
    return rendered_capture_sequence


def _assert_close(a, b, tol=1e-6):
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= tol


def test_scannet_reads_poses_intrinsics_and_mm_depth_and_drops_inf_poses(rendered, tmp_path):
    root = write_scannet(tmp_path / "scene0007_00", rendered, invalid=(2,))
    seq = read_sequence("scannet", root)
    assert seq.sequence_id == "scene0007_00"
    assert [f.frame_id for f in seq.frames] == ["0", "1", "3", "4", "5"]
    assert seq.dropped == {"invalid pose (-inf/NaN or not rigid)": 1}
    truth = [rendered.frames[i] for i in (0, 1, 3, 4, 5)]
    for frame, true in zip(seq.frames, truth):
        _assert_close(frame.cam2world, true.cam2world)
        _assert_close(frame.K_image, rendered.K_color)
        _assert_close(frame.K_depth, rendered.K_depth)
        assert frame.image_size == rendered.color_size and frame.depth_size == rendered.depth_size
        assert frame.depth_scale == 0.001
        depth = load_depth(frame)
        valid = true.depth > 0
        assert np.array_equal(depth > 0, valid)
        assert np.max(np.abs(depth[valid] - true.depth[valid])) <= 0.0005 + 1e-6  # mm rounding


def test_arkitscenes_matches_nearest_trajectory_sample_and_inverts_world_to_camera(rendered, tmp_path):
    root = write_arkitscenes(tmp_path / "Training", rendered)
    assert discover_sequences("arkitscenes", tmp_path / "Training") == [root]
    seq = read_sequence("arkitscenes", root)
    assert seq.sequence_id == "41069025" and len(seq.frames) == len(rendered.frames)
    for frame, true in zip(seq.frames, rendered.frames):
        _assert_close(frame.cam2world, true.cam2world)
        _assert_close(frame.K_depth, rendered.K_depth)
        assert frame.depth_scale == 0.001


def test_arkitscenes_drops_frames_whose_nearest_sample_is_too_far(rendered, tmp_path):
    root = write_arkitscenes(tmp_path, rendered)
    with pytest.raises(CaptureError, match=r"no frame has a valid pose \(6 frames: 6 no trajectory sample within 0.001 s"):
        read_sequence("arkitscenes", root, max_pose_difference=0.001)


def test_tum_associates_by_timestamp_with_scalar_last_quaternions_and_factor_5000(rendered, tmp_path):
    root = write_tum(tmp_path, rendered)
    intrinsics = to_integer_centres(rendered.K_depth)
    seq = read_sequence("tum", root, intrinsics=intrinsics)
    assert len(seq.frames) == len(rendered.frames)
    for frame, true in zip(seq.frames, rendered.frames):
        _assert_close(frame.cam2world, true.cam2world)
        _assert_close(frame.K_depth, rendered.K_depth)
        assert frame.depth_scale == 1 / 5000
        depth = load_depth(frame)
        valid = true.depth > 0
        assert np.max(np.abs(depth[valid] - true.depth[valid])) <= 0.0001 + 1e-6
    # a depth frame more than the tolerance away is not associated
    with pytest.raises(CaptureError, match="no depth frame within 0.005 s"):
        read_sequence("tum", root, intrinsics=intrinsics, max_difference=0.005)


def test_generic_jsonl_and_parquet_read_the_same_frames(rendered, tmp_path):
    root = write_frames_jsonl(tmp_path / "seq", rendered)
    seq = read_sequence("frames", root)
    for frame, true in zip(seq.frames, rendered.frames):
        _assert_close(frame.cam2world, true.cam2world)
        _assert_close(frame.K_image, rendered.K_color)
        _assert_close(frame.K_depth, rendered.K_depth)
    rows = [json.loads(line) for line in (root / "frames.jsonl").read_text().splitlines()]
    rows[1]["cam2world"] = None
    (root / "frames.jsonl").unlink()
    pq.write_table(pa.Table.from_pylist(rows), root / "frames.parquet")
    seq2 = read_sequence("frames", root)
    assert [f.frame_id for f in seq2.frames] == [f.frame_id for f in seq.frames if f.frame_id != "f0001"]
    assert seq2.dropped == {"invalid pose (null, non-finite or not rigid)": 1}


def test_colour_resampled_onto_the_depth_grid_matches_a_depth_resolution_render(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0001_00", rendered))
    frame = seq.frames[0]
    warped = rgb_in_depth_camera(frame, load_rgb(frame))
    assert warped.shape[:2] == (rendered.depth_size[1], rendered.depth_size[0])
    with EmbeddedRenderer() as renderer:
        from rendering.backend import SceneSpec

        renderer.load_scene(SceneSpec("capture-test", "procedural:4?rooms=1"))
        direct = renderer.render(rendered.K_depth, frame.cam2world, *rendered.depth_size).rgb
    error = np.abs(warped.astype(int) - direct.astype(int)).mean()
    shifted = np.abs(np.roll(warped, 2, axis=1).astype(int) - direct.astype(int)).mean()
    assert error < 12 and error < shifted  # aligned (resampling blurs texture, a 2 px shift is worse)


# ---------------------------------------------------------------------------------------------
# Conventions, each against a hand-computed case


def test_scannet_intrinsics_move_to_half_pixel_centres_and_poses_are_cam_to_world(tmp_path):
    root = tmp_path / "scene0000_00"
    for name in ("color", "depth", "pose", "intrinsic"):
        (root / name).mkdir(parents=True)
    K4 = np.eye(4)
    K4[0, 0], K4[1, 1], K4[0, 2], K4[1, 2] = 500.0, 501.0, 319.5, 239.5
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", K4)
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", K4)
    cv2.imwrite(str(root / "color" / "0.jpg"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(root / "depth" / "0.png"), np.full((4, 6), 1500, np.uint16))
    pose = np.array([[0, -1, 0, 1.0], [1, 0, 0, 2.0], [0, 0, 1, 3.0], [0, 0, 0, 1]])
    np.savetxt(root / "pose" / "0.txt", pose)
    frame = read_sequence("scannet", root).frames[0]
    assert frame.K_depth[0, 2] == 320.0 and frame.K_depth[1, 2] == 240.0 and frame.K_depth[1, 1] == 501.0
    assert np.array_equal(frame.cam2world, pose)  # camera centre (1, 2, 3): used as is
    assert np.all(load_depth(frame) == np.float32(1.5))


def test_colour_at_twice_the_depth_resolution_is_averaged_onto_the_depth_grid():
    from rendering.captures.record import CaptureFrame

    K_depth = np.array([[3.0, 0, 2.0], [0, 3.0, 1.0], [0, 0, 1]])  # 4x2 depth grid
    K_image = np.array([[6.0, 0, 4.0], [0, 6.0, 2.0], [0, 0, 1]])  # 8x4 colour, same camera
    frame = CaptureFrame("0", None, None, 0.001, K_image, (8, 4), K_depth, (4, 2), np.eye(4), 0.0)
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, :, 0] = np.arange(8) * 20  # red ramps by column: 0, 20, ..., 140
    rgb[:, :, 1] = (np.arange(4) * 40)[:, None]  # green by row: 0, 40, 80, 120
    warped = rgb_in_depth_camera(frame, rgb)
    # depth pixel (c, r) covers colour pixels 2c..2c+1 x 2r..2r+1: their mean
    assert warped[:, :, 0].tolist() == [[10, 50, 90, 130]] * 2
    assert warped[:, :, 1].tolist() == [[20] * 4, [100] * 4]


def test_arkit_angle_axis_is_world_to_camera():
    # world-to-camera: rotate 90 degrees about z, then translate by (1, 0, 0)
    cam2world = angle_axis_pose_to_cam2world(np.array([0.0, 0.0, math.pi / 2]), np.array([1.0, 0.0, 0.0]))
    # the camera centre c satisfies R c + t = 0: R = [[0,-1,0],[1,0,0],[0,0,1]], so c = -R^T t = (0, 1, 0)
    _assert_close(cam2world[:3, 3], [0.0, 1.0, 0.0], 1e-12)
    _assert_close(cam2world[:3, :3], [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], 1e-12)


def test_tum_quaternion_is_scalar_last_and_calibrations_shift_half_a_pixel(tmp_path):
    s = math.sqrt(0.5)
    _assert_close(quaternion_xyzw_to_matrix(0.0, 0.0, s, s), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], 1e-12)
    _assert_close(quaternion_xyzw_to_matrix(0.0, 0.0, 0.0, 1.0), np.eye(3), 0)
    root = tmp_path / "rgbd_dataset_freiburg1_xyz"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    cv2.imwrite(str(root / "rgb" / "1.0.png"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(root / "depth" / "1.0.png"), np.full((4, 6), 5000, np.uint16))
    (root / "rgb.txt").write_text("# comment\n1.0 rgb/1.0.png\n")
    (root / "depth.txt").write_text("1.01 depth/1.0.png\n")
    (root / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n1.005 1 2 3 0 0 0.7071067811865476 0.7071067811865476\n")
    frame = read_sequence("tum", root).frames[0]
    fx, fy, cx, cy = TUM_CAMERAS["freiburg1"]
    assert (frame.K_depth[0, 0], frame.K_depth[0, 2], frame.K_depth[1, 2]) == (fx, cx + 0.5, cy + 0.5)
    _assert_close(frame.cam2world[:3, 3], [1, 2, 3], 0)
    assert np.all(load_depth(frame) == np.float32(1.0))  # 5000 units = 1 m


# ---------------------------------------------------------------------------------------------
# Bad input


def test_a_sequence_without_any_valid_pose_is_refused_by_name(rendered, tmp_path):
    root = write_scannet(tmp_path / "scene0099_00", rendered, invalid=tuple(range(len(rendered.frames))))
    with pytest.raises(CaptureError, match=r"scannet sequence 'scene0099_00' at .*scene0099_00: no frame has a valid pose "
                                            r"\(6 frames: 6 invalid pose"):
        read_sequence("scannet", root)


def test_bad_files_are_named(tmp_path, rendered):
    root = write_tum(tmp_path, rendered)
    (root / "groundtruth.txt").write_text("1.0 1 2 3\n")
    with pytest.raises(CaptureError, match=r"groundtruth.txt line 1: expected 8 fields, got 4"):
        read_sequence("tum", root)
    with pytest.raises(CaptureError, match="unknown capture kind 'kinect'"):
        read_sequence("kinect", root)
    with pytest.raises(CaptureError, match="no scannet sequence under"):
        discover_sequences("scannet", tmp_path)
    jsonl = write_frames_jsonl(tmp_path / "g", rendered)
    (jsonl / "frames.jsonl").write_text('{"frame_id": "a"}\n')
    with pytest.raises(CaptureError, match=r"frames.jsonl row 1: missing field\(s\) \['image'"):
        read_sequence("frames", jsonl)

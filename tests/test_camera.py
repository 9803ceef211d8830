import math

import numpy as np
import pytest

from rendering import camera
from rendering.backends.habitat import frame as habitat_frame


def test_intrinsics_follow_horizontal_fov_and_pixel_centre_convention():
    K = camera.intrinsics_from_fov(256, 192, 60.0)
    assert K[0, 0] == pytest.approx(128.0 / math.tan(math.radians(30.0)))
    assert K[0, 0] == K[1, 1]
    assert (K[0, 2], K[1, 2]) == (128.0, 96.0)
    # The ray through the centre of the pixel just right of the principal point has x = 0.5 / f.
    rays = camera.pixel_rays(256, 192, K)
    assert rays[96, 128, 0] == pytest.approx(0.5 / K[0, 0])


@pytest.mark.parametrize("bad", [(0, 10, 60.0), (10, 10, 0.0), (10, 10, 180.0)])
def test_intrinsics_reject_bad_values(bad):
    with pytest.raises(ValueError):
        camera.intrinsics_from_fov(*bad)


def _poses():
    rng = np.random.default_rng(0)
    poses = [camera.look_at(np.array([0.0, 1.5, 0.0]), np.array([0.0, 1.5, -1.0]))]
    for _ in range(5):
        eye = rng.uniform(-3, 3, 3)
        poses.append(camera.look_at(eye, eye + rng.normal(size=3)))
    poses.append(
        camera.apply_orientation_noise(poses[-1], *np.radians([3.0, -10.0, 5.0]))
    )
    return poses


@pytest.mark.parametrize("pose", _poses())
def test_known_point_projects_where_the_math_says(pose):
    K = camera.intrinsics_from_fov(200, 100, 60.0)
    # A point 2 m straight ahead along the optical axis lands on the principal point.
    ahead = pose[:3, 3] + 2.0 * pose[:3, 2]
    uv, z = camera.project(ahead[None], K, pose)
    np.testing.assert_allclose(uv[0], [100.0, 50.0], atol=1e-9)
    assert z[0] == pytest.approx(2.0)
    # A point offset by +x (camera right) and +y (camera down) lands right of and below centre.
    p = pose[:3, 3] + 4.0 * pose[:3, 2] + 1.0 * pose[:3, 0] + 0.5 * pose[:3, 1]
    uv, z = camera.project(p[None], K, pose)
    np.testing.assert_allclose(uv[0], [100.0 + K[0, 0] / 4.0, 50.0 + K[1, 1] * 0.5 / 4.0], atol=1e-9)
    # Unprojecting its depth at that pixel gives the point back.
    depth = np.zeros((100, 200))
    col, row = int(uv[0, 0]), int(uv[0, 1])
    depth[row, col] = z[0]
    back = camera.unproject_depth(depth, K, pose)[row, col]
    ray_err = np.linalg.norm(back - p)
    assert ray_err < 4.0 / K[0, 0]  # within one pixel footprint at 4 m


def test_look_at_is_upright_opencv_frame():
    pose = camera.look_at(np.zeros(3), np.array([0.0, 0.0, -1.0]))
    np.testing.assert_allclose(pose[:3, 0], [1, 0, 0], atol=1e-12)  # right = +X
    np.testing.assert_allclose(pose[:3, 1], [0, -1, 0], atol=1e-12)  # down = -Y
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
    camera.check_pose(pose)


def test_yaw_turns_left_and_tilt_looks_up():
    level = camera.yaw_pitch_roll_rotation(0.0, 0.0, 0.0)
    np.testing.assert_allclose(level[:, 2], [0, 0, -1], atol=1e-12)
    left = camera.yaw_pitch_roll_rotation(math.radians(90), 0.0, 0.0)
    np.testing.assert_allclose(left[:, 2], [-1, 0, 0], atol=1e-12)
    up = camera.yaw_pitch_roll_rotation(0.0, math.radians(10), 0.0)
    assert up[1, 2] > 0


@pytest.mark.parametrize("bad", [np.full((4, 4), np.nan), np.eye(3), np.diag([1.0, 1.0, -1.0, 1.0])])
def test_check_pose_rejects_nan_and_non_rigid(bad):
    with pytest.raises(ValueError, match="cam2world"):
        camera.check_pose(bad)


@pytest.mark.parametrize("pose", _poses())
def test_habitat_conversion_round_trips(pose):
    position, q = habitat_frame.opencv_pose_to_habitat_state(pose)
    assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
    back = habitat_frame.habitat_state_to_opencv_pose(position, q)
    np.testing.assert_allclose(back, pose, atol=1e-10)


def test_habitat_frame_looks_along_minus_z_with_y_up():
    pose = camera.look_at(np.zeros(3), np.array([1.0, 0.0, 0.0]))
    hab = habitat_frame.opencv_to_habitat_pose(pose)
    np.testing.assert_allclose(-hab[:3, 2], [1, 0, 0], atol=1e-12)  # forward is -z
    np.testing.assert_allclose(hab[:3, 1], [0, 1, 0], atol=1e-12)  # camera up is world up
    # Identity habitat rotation = looking along world -Z, upright.
    ident = habitat_frame.habitat_state_to_opencv_pose(np.zeros(3), np.array([1.0, 0, 0, 0]))
    np.testing.assert_allclose(ident[:3, :3], camera.yaw_pitch_roll_rotation(0, 0, 0), atol=1e-12)


def test_habitat_quaternion_rejects_nan():
    with pytest.raises(ValueError, match="quaternion"):
        habitat_frame.quaternion_wxyz_to_matrix(np.array([np.nan, 0, 0, 1]))

"""The one place that converts between our OpenCV poses and Habitat's conventions.

Habitat's camera frame is +x right, +y up, -z forward (OpenGL style); its rotations are unit
quaternions in (w, x, y, z) order (numpy-quaternion / Magnum). Both share the scene's world frame.
"""

from __future__ import annotations

import numpy as np

from rendering.camera import check_pose, pose_from_rotation_translation

# Maps OpenCV camera axes onto Habitat camera axes (and back: it is its own inverse).
OPENCV_TO_HABITAT_AXES = np.diag([1.0, -1.0, -1.0])


def opencv_to_habitat_pose(cam2world: np.ndarray) -> np.ndarray:
    """OpenCV cam2world -> Habitat camera-to-world (same position, y and z axes flipped)."""
    pose = check_pose(cam2world).copy()
    pose[:3, :3] = pose[:3, :3] @ OPENCV_TO_HABITAT_AXES
    return pose


def habitat_to_opencv_pose(hab_cam2world: np.ndarray) -> np.ndarray:
    """Habitat camera-to-world -> OpenCV cam2world."""
    pose = check_pose(hab_cam2world, "habitat cam2world").copy()
    pose[:3, :3] = pose[:3, :3] @ OPENCV_TO_HABITAT_AXES
    return pose


def quaternion_wxyz_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation matrix. Rejects NaN and zero quaternions."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion must be 4 finite numbers (w, x, y, z), got {q_wxyz!r}")
    norm = np.linalg.norm(q)
    if norm < 1e-9:
        raise ValueError("quaternion has zero length")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def habitat_state_to_opencv_pose(position: np.ndarray, rotation_wxyz: np.ndarray) -> np.ndarray:
    """Habitat sensor state (world position, (w, x, y, z) rotation) -> OpenCV cam2world."""
    position = np.asarray(position, dtype=np.float64)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise ValueError(f"position must be 3 finite numbers, got {position!r}")
    hab = pose_from_rotation_translation(quaternion_wxyz_to_matrix(rotation_wxyz), position)
    return habitat_to_opencv_pose(hab)


def opencv_pose_to_habitat_state(cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV cam2world -> Habitat sensor state (world position, (w, x, y, z) rotation)."""
    hab = opencv_to_habitat_pose(cam2world)
    return hab[:3, 3].copy(), matrix_to_quaternion_wxyz(hab[:3, :3])

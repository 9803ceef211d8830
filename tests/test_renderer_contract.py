"""The renderer contract, checked the same way for every backend.

Scenes are GLB files written here with trimesh and loaded through ``renderer.load_scene`` so that
any backend (embedded, Habitat) runs exactly these tests. Every scene has a floor (the bottom of a
6 x 3 x 8 m room) so that backends can find a navigable space.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial

from rendering import camera
from rendering.backend import Renderer, SceneLoadError, SceneSpec
from rendering.backends import create_renderer

ROOM_LO = np.array([-3.0, 0.0, -4.0])
ROOM_HI = np.array([3.0, 3.0, 4.0])
WIDTH, HEIGHT = 48, 40  # not square, so that a swapped width/height shows
K = camera.intrinsics_from_fov(WIDTH, HEIGHT, 70.0)


def _poses() -> list[np.ndarray]:
    """Camera poses inside the room: level, tilted, rolled, looking up into a corner, looking down."""
    level = camera.look_at(np.array([0.0, 1.5, 0.0]), np.array([0.0, 1.5, -1.0]))
    tilted = camera.apply_orientation_noise(
        camera.look_at(np.array([1.0, 1.2, 2.0]), np.array([-2.0, 1.0, -3.0])), 0.05, 0.3, 0.0
    )
    rolled = camera.apply_orientation_noise(
        camera.look_at(np.array([-1.5, 1.7, -1.0]), np.array([3.0, 1.5, 1.0])), -0.1, -0.1, 0.4
    )
    corner = camera.look_at(np.array([0.5, 1.0, 0.5]), np.array([3.0, 3.0, -4.0]))
    down = camera.apply_orientation_noise(camera.look_at(np.array([0.0, 2.5, 1.0]), np.array([0.3, 0.0, 0.5])), 0, 0, 1.0)
    return [level, tilted, rolled, corner, down]


def _room_mesh() -> trimesh.Trimesh:
    """Inward-facing box room, one flat colour per wall (faces do not share vertices)."""
    room = trimesh.creation.box(bounds=np.stack([ROOM_LO, ROOM_HI]))
    room.invert()
    room.unmerge_vertices()
    palette = np.array([[180, 180, 180, 255], [150, 150, 200, 255], [200, 150, 150, 255], [150, 200, 150, 255]])
    room.visual.face_colors = palette[(np.arange(len(room.faces)) // 2) % len(palette)]
    return room


def _quad(center: np.ndarray, right: np.ndarray, up: np.ndarray, half: float) -> trimesh.Trimesh:
    """A square of side ``2 * half`` in the plane spanned by ``right`` and ``up`` (counter-clockwise)."""
    corners = [center + half * (sx * right + sy * up) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return trimesh.Trimesh(vertices=np.array(corners), faces=[[0, 1, 2], [0, 2, 3]], process=False)


def _write_glb(path: Path, *meshes: trimesh.Trimesh) -> Path:
    scene = trimesh.Scene()
    for i, mesh in enumerate(meshes):
        scene.add_geometry(mesh, geom_name=f"part{i}")
    path.write_bytes(scene.export(file_type="glb"))
    return path


def _analytic_room_depth(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-depth of the room's walls through every pixel centre, and which wall each pixel sees."""
    rays = camera.pixel_rays(WIDTH, HEIGHT, K)  # camera frame, z == 1, so ray length t == z-depth
    dirs = rays @ pose[:3, :3].T
    origin = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo = (ROOM_LO - origin) / dirs
        t_hi = (ROOM_HI - origin) / dirs
    t = np.concatenate([t_lo, t_hi], axis=-1)  # 6 wall planes
    t = np.where(t > 0, t, np.inf)
    return t.min(axis=-1), t.argmin(axis=-1)


def _away_from_edges(wall: np.ndarray) -> np.ndarray:
    """Pixels whose 3 x 3 neighbourhood sees a single wall (not within 1 px of a wall edge)."""
    padded = np.pad(wall, 1, mode="edge")
    same = np.ones_like(wall, dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            same &= padded[1 + dr : 1 + dr + wall.shape[0], 1 + dc : 1 + dc + wall.shape[1]] == wall
    return same


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["embedded", "habitat"])
def renderer(request) -> Renderer:
    if request.param == "habitat":
        pytest.importorskip("habitat_sim", reason="habitat-sim is not installed (conda-only; optional backend)")
    r = create_renderer(request.param)
    yield r
    r.close()


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("contract_scenes")
    files = {"room": _write_glb(root / "room.glb", _room_mesh())}

    # Markers: small red squares facing the level camera at known points, for the projection test.
    markers = []
    for point in MARKER_POINTS:
        quad = _quad(point, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), MARKER_HALF)
        quad.visual.face_colors = [255, 0, 0, 255]
        markers.append(quad)
    files["markers"] = _write_glb(root / "markers.glb", _room_mesh(), *markers)

    # A textured 2 x 2 checker quad and two vertex-coloured quads on the far wall's side.
    checker = np.zeros((16, 16, 3), dtype=np.uint8)
    checker[:8, :8] = CHECKER_COLORS["top_left"]
    checker[:8, 8:] = CHECKER_COLORS["top_right"]
    checker[8:, :8] = CHECKER_COLORS["bottom_left"]
    checker[8:, 8:] = CHECKER_COLORS["bottom_right"]
    textured = _quad(np.array([0.0, 1.5, -3.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), 1.0)
    textured.visual = trimesh.visual.TextureVisuals(
        uv=np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
        material=PBRMaterial(baseColorTexture=Image.fromarray(checker), baseColorFactor=[255, 255, 255, 255]),
    )
    left = _quad(np.array([-2.0, 1.5, -3.5]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), 0.4)
    left.visual.vertex_colors = np.tile(VERTEX_COLORS[0], (4, 1))
    right = _quad(np.array([2.0, 1.5, -3.5]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), 0.4)
    right.visual.vertex_colors = np.tile(VERTEX_COLORS[1], (4, 1))
    files["textured"] = _write_glb(root / "textured.glb", _room_mesh(), textured, left, right)
    return files


MARKER_POINTS = [np.array([0.0, 1.5, -2.0]), np.array([-1.1, 2.0, -3.0]), np.array([0.9, 0.8, -2.5])]
MARKER_HALF = 0.12
CHECKER_COLORS = {
    "top_left": (230, 20, 20),
    "top_right": (20, 200, 30),
    "bottom_left": (30, 40, 220),
    "bottom_right": (240, 220, 20),
}
VERTEX_COLORS = [np.array([250, 120, 0, 255]), np.array([0, 160, 250, 255])]


# ---------------------------------------------------------------- tests


def test_load_scene_returns_navigable_floor(renderer, scene_files):
    navigable = renderer.load_scene(SceneSpec("room", str(scene_files["room"])))
    point = navigable.sample_point(np.random.default_rng(0))
    assert np.all(point[[0, 2]] >= ROOM_LO[[0, 2]] - 1e-6) and np.all(point[[0, 2]] <= ROOM_HI[[0, 2]] + 1e-6)
    assert abs(point[1] - ROOM_LO[1]) < 0.25  # on the floor (a navmesh may sit a cell height above)
    snapped = navigable.snap_point(np.array([10.0, 1.0, 0.0]))  # outside the room: back inside
    assert ROOM_LO[0] - 1e-6 <= snapped[0] <= ROOM_HI[0] + 1e-6 and abs(snapped[1] - ROOM_LO[1]) < 0.25


@pytest.mark.parametrize("pose_index", range(len(_poses())))
def test_depth_matches_analytic_room_away_from_edges(renderer, scene_files, pose_index):
    renderer.load_scene(SceneSpec("room", str(scene_files["room"])))
    pose = _poses()[pose_index]
    view = renderer.render(K, pose, WIDTH, HEIGHT)
    assert view.rgb.shape == (HEIGHT, WIDTH, 3) and view.rgb.dtype == np.uint8
    assert view.depth.shape == (HEIGHT, WIDTH) and view.depth.dtype == np.float32
    expected, wall = _analytic_room_depth(pose)
    interior = _away_from_edges(wall)
    assert interior.mean() > 0.7  # the test checks most of the image
    error = np.abs(view.depth.astype(np.float64) - expected)[interior]
    assert error.max() <= 1e-3, f"max depth error {error.max():.2e} m"
    assert view.valid_fraction == 1.0  # closed room: every ray hits a wall


@pytest.mark.parametrize("yaw_pitch_roll", [(0.0, 0.0, 0.0), (0.15, 0.1, 0.0), (-0.1, -0.05, 0.3), (0.05, 0.15, -0.4)])
def test_marker_appears_where_projection_says(renderer, scene_files, yaw_pitch_roll):
    renderer.load_scene(SceneSpec("markers", str(scene_files["markers"])))
    rotation = camera.yaw_pitch_roll_rotation(*yaw_pitch_roll)
    pose = camera.pose_from_rotation_translation(rotation, np.array([0.1, 1.4, 1.0]))
    view = renderer.render(K, pose, WIDTH, HEIGHT)
    red = (view.rgb[:, :, 0] > 200) & (view.rgb[:, :, 1] < 60) & (view.rgb[:, :, 2] < 60)
    # Markers are small and far apart: label each red pixel by its nearest marker projection.
    uv, z = camera.project(np.array(MARKER_POINTS), K, pose)
    rows, cols = np.nonzero(red)
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1)
    seen = 0
    for i, (point_uv, point_z) in enumerate(zip(uv, z)):
        inside = point_z > 0 and 3 <= point_uv[0] <= WIDTH - 3 and 3 <= point_uv[1] <= HEIGHT - 3
        if not inside:
            continue
        near = np.linalg.norm(centres - point_uv, axis=1) < 6
        assert near.sum() >= 2, f"marker {i} not visible near pixel {point_uv}"
        assert np.allclose(centres[near].mean(axis=0), point_uv, atol=1.0), (centres[near].mean(axis=0), point_uv)
        seen += 1
    assert seen >= 2


def test_same_pose_renders_byte_identical_also_after_switching_scenes(renderer, scene_files):
    pose = _poses()[0]  # sees the textured quad and the markers
    renderer.load_scene(SceneSpec("textured", str(scene_files["textured"])))
    first = renderer.render(K, pose, WIDTH, HEIGHT)
    again = renderer.render(K, pose, WIDTH, HEIGHT)
    renderer.load_scene(SceneSpec("markers", str(scene_files["markers"])))
    other = renderer.render(K, pose, WIDTH, HEIGHT)
    renderer.load_scene(SceneSpec("textured", str(scene_files["textured"])))
    back = renderer.render(K, pose, WIDTH, HEIGHT)
    for view in (again, back):
        assert view.rgb.tobytes() == first.rgb.tobytes()
        assert view.depth.tobytes() == first.depth.tobytes()
    assert other.rgb.tobytes() != first.rgb.tobytes()  # the scene switch really happened


def test_texture_and_vertex_colours_show_where_expected(renderer, scene_files):
    renderer.load_scene(SceneSpec("textured", str(scene_files["textured"])))
    width, height = 64, 48
    k = camera.intrinsics_from_fov(width, height, 90.0)
    pose = camera.look_at(np.array([0.0, 1.5, 0.0]), np.array([0.0, 1.5, -1.0]))
    view = renderer.render(k, pose, width, height)
    # Quadrant centres of the textured quad (2 m wide at z = 3 m) and of the vertex-coloured quads.
    points = {
        "top_left": [-0.5, 2.0, -3.0],
        "top_right": [0.5, 2.0, -3.0],
        "bottom_left": [-0.5, 1.0, -3.0],
        "bottom_right": [0.5, 1.0, -3.0],
        "vertex_left": [-2.0, 1.5, -3.5],
        "vertex_right": [2.0, 1.5, -3.5],
    }
    expected = {**CHECKER_COLORS, "vertex_left": VERTEX_COLORS[0][:3], "vertex_right": VERTEX_COLORS[1][:3]}
    uv, _ = camera.project(np.array(list(points.values())), k, pose)
    for name, (u, v) in zip(points, uv):
        pixel = view.rgb[int(math.floor(v)), int(math.floor(u))].astype(int)
        assert np.abs(pixel - np.array(expected[name])).max() <= 3, (name, pixel.tolist(), expected[name])


@pytest.mark.parametrize(
    "bad_pose, match",
    [
        (np.full((4, 4), np.nan), "NaN"),
        (np.diag([2.0, 2.0, 2.0, 1.0]), "rotation"),
        (np.eye(3), "4x4"),
    ],
)
def test_bad_pose_is_rejected(renderer, scene_files, bad_pose, match):
    renderer.load_scene(SceneSpec("room", str(scene_files["room"])))
    with pytest.raises(ValueError, match=match):
        renderer.render(K, bad_pose, WIDTH, HEIGHT)


@pytest.mark.parametrize(
    "bad_k, match",
    [
        (np.array([[0.0, 0, 24], [0, 30.0, 20], [0, 0, 1]]), "focal"),
        (np.array([[30.0, 0, np.nan], [0, 30.0, 20], [0, 0, 1]]), "NaN"),
        (np.eye(4), "3x3"),
    ],
)
def test_bad_intrinsics_are_rejected(renderer, scene_files, bad_k, match):
    renderer.load_scene(SceneSpec("room", str(scene_files["room"])))
    pose = _poses()[0]
    with pytest.raises(ValueError, match=match):
        renderer.render(bad_k, pose, WIDTH, HEIGHT)


def test_missing_scene_file_names_the_file(renderer, tmp_path):
    missing = tmp_path / "no_such_scene.glb"
    with pytest.raises(SceneLoadError, match="no_such_scene.glb"):
        renderer.load_scene(SceneSpec("missing", str(missing)))


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(ValueError, match="embedded"):
        create_renderer("raytracer")


def test_habitat_backend_without_habitat_sim_says_how_to_install():
    try:
        import habitat_sim  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="habitat"):
            create_renderer("habitat")
    else:
        pytest.skip("habitat_sim is installed here; the missing-dependency message cannot be shown")

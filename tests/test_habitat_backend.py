"""The habitat backend: pure parts everywhere, the simulator where habitat_sim imports.

Tests that need habitat-sim are skipped with the reason when it is missing (run them with
tests/habitat/run_in_chroot.sh on a machine without conda). The renderer contract itself is in
tests/test_renderer_contract.py; these cover Habitat specifics (intrinsics it can express, frame
conversion, reconfiguration, navmesh files, Z-up datasets, crash-prone input).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from rendering import camera
from rendering.backend import SceneLoadError, SceneSpec
from rendering.backends import create_renderer
from rendering.backends.habitat import (
    HabitatUnavailableError,
    NavMeshOptions,
    glb_bounds,
    hfov_from_intrinsics,
    import_habitat_sim,
    navmesh_file_for,
    needs_unlit_materials,
    read_glb,
    stage_config,
    write_unlit_glb,
)

PROJECT = Path(__file__).resolve().parents[1]
HAVE_HABITAT = importlib.util.find_spec("habitat_sim") is not None
needs_habitat = pytest.mark.skipif(not HAVE_HABITAT, reason="habitat_sim is not installed (see tests/habitat/run_in_chroot.sh)")

ROOM_LO = np.array([-3.0, 0.0, -4.0])
ROOM_HI = np.array([3.0, 3.0, 4.0])


def _room(lo=ROOM_LO, hi=ROOM_HI) -> trimesh.Trimesh:
    room = trimesh.creation.box(bounds=np.stack([lo, hi]))
    room.invert()
    return room


def _write_glb(path: Path, *meshes: trimesh.Trimesh, transform: np.ndarray | None = None) -> Path:
    scene = trimesh.Scene()
    for i, mesh in enumerate(meshes):
        mesh = mesh.copy()
        if transform is not None:
            mesh.apply_transform(transform)
        scene.add_geometry(mesh, geom_name=f"part{i}")
    path.write_bytes(scene.export(file_type="glb"))
    return path


def _room_depth(K: np.ndarray, pose: np.ndarray, width: int, height: int) -> np.ndarray:
    rays = camera.pixel_rays(width, height, K) @ pose[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.concatenate([(ROOM_LO - pose[:3, 3]) / rays, (ROOM_HI - pose[:3, 3]) / rays], axis=-1)
    return np.where(t > 0, t, np.inf).min(axis=-1)


# ---------------------------------------------------------------------------------------------
# without habitat-sim
# ---------------------------------------------------------------------------------------------


def test_hfov_from_intrinsics_round_trips_and_rejects_what_habitat_cannot_express():
    for w, h, fov in [(256, 256, 60.0), (64, 48, 90.0), (33, 71, 20.0)]:
        assert hfov_from_intrinsics(camera.intrinsics_from_fov(w, h, fov), w, h) == pytest.approx(fov, abs=1e-9)
    K = camera.intrinsics_from_fov(64, 48, 60.0)
    off_centre = K.copy()
    off_centre[0, 2] += 1.5
    with pytest.raises(ValueError, match="principal point"):
        hfov_from_intrinsics(off_centre, 64, 48)
    non_square = K.copy()
    non_square[1, 1] *= 1.1
    with pytest.raises(ValueError, match="square pixels"):
        hfov_from_intrinsics(non_square, 64, 48)
    skewed = K.copy()
    skewed[0, 1] = 0.5
    with pytest.raises(ValueError, match="skew"):
        hfov_from_intrinsics(skewed, 64, 48)
    nan = K.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hfov_from_intrinsics(nan, 64, 48)
    with pytest.raises(ValueError, match="image size"):
        hfov_from_intrinsics(K, 0, 48)
    with pytest.raises(ValueError, match="principal point"):  # K made for another image size
        hfov_from_intrinsics(K, 48, 64)


def test_stage_config_states_the_up_axis(tmp_path):
    glb = _write_glb(tmp_path / "a.glb", _room())
    assert stage_config(glb) == {"render_asset": str(glb.resolve()), "up": [0.0, 1.0, 0.0], "front": [0.0, 0.0, -1.0]}
    assert stage_config(glb, "z")["up"] == [0.0, 0.0, 1.0] and stage_config(glb, "z")["front"] == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="up_axis"):
        stage_config(glb, "x")


def test_navmesh_file_next_to_the_scene(tmp_path):
    (tmp_path / "a.glb").write_bytes(b"x")
    assert navmesh_file_for(tmp_path / "a.glb") is None
    (tmp_path / "a.navmesh").write_bytes(b"x")
    assert navmesh_file_for(tmp_path / "a.glb") == tmp_path / "a.navmesh"
    (tmp_path / "h.basis.glb").write_bytes(b"x")
    (tmp_path / "h.basis.navmesh").write_bytes(b"x")
    assert navmesh_file_for(tmp_path / "h.basis.glb") == tmp_path / "h.basis.navmesh"
    (tmp_path / "s.stage_config.json").write_text("{}")
    (tmp_path / "s.navmesh").write_bytes(b"x")
    assert navmesh_file_for(tmp_path / "s.stage_config.json") == tmp_path / "s.navmesh"


def test_glb_bounds_follow_node_transforms_and_reject_non_glb(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(bounds=[[-1, 0, -2], [3, 1, 5]]), transform=trimesh.transformations.translation_matrix([1, 2, 3]))
    rot = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0])  # x -> -z
    scene.add_geometry(trimesh.creation.box(bounds=[[10, 0, 0], [11, 1, 1]]), transform=rot)
    path = tmp_path / "b.glb"
    path.write_bytes(scene.export(file_type="glb"))
    np.testing.assert_allclose(glb_bounds(path), [[0, 0, -11], [4, 3, 8]], atol=1e-6)
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"PK\x03\x04 not a glb at all")
    with pytest.raises(SceneLoadError, match="not a binary glTF"):
        glb_bounds(bad)
    truncated = tmp_path / "trunc.glb"
    truncated.write_bytes(path.read_bytes()[:40])
    with pytest.raises(SceneLoadError, match=str(truncated.name)):
        glb_bounds(truncated)


def test_untextured_materials_are_copied_unlit_and_textured_ones_left_alone(tmp_path):
    coloured = _room()
    coloured.visual.face_colors = [200, 100, 50, 255]
    src = _write_glb(tmp_path / "coloured.glb", coloured)
    doc, _ = read_glb(src)
    assert needs_unlit_materials(doc)
    dst = tmp_path / "unlit.glb"
    write_unlit_glb(src, dst)
    out, _ = read_glb(dst)
    assert not needs_unlit_materials(out) and "KHR_materials_unlit" in out["extensionsUsed"]
    assert all("KHR_materials_unlit" in m["extensions"] for m in out["materials"])
    assert json.dumps(out["accessors"]) == json.dumps(doc["accessors"])  # geometry untouched
    assert dst.stat().st_size % 4 == 0 and int.from_bytes(dst.read_bytes()[8:12], "little") == dst.stat().st_size
    reloaded = trimesh.load(dst, force="mesh")
    assert len(reloaded.faces) == len(coloured.faces)
    textured = {"materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
                "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}]}
    assert not needs_unlit_materials(textured)


def test_navmesh_options_are_validated():
    with pytest.raises(ValueError, match="agent_radius"):
        NavMeshOptions(agent_radius=-0.1)
    with pytest.raises(ValueError, match="agent_max_slope"):
        NavMeshOptions(agent_max_slope=95.0)
    with pytest.raises(ValueError, match="cell_size"):
        NavMeshOptions(cell_size=float("nan"))


def test_missing_habitat_gives_install_instructions(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # makes `import habitat_sim` fail
    with pytest.raises(HabitatUnavailableError) as info:
        import_habitat_sim()
    assert isinstance(info.value, ImportError)
    message = str(info.value)
    assert "conda install habitat-sim" in message and "-c aihabitat" in message and "headless" in message
    assert "without conda" in message
    with pytest.raises(ImportError, match="conda install habitat-sim"):
        create_renderer("habitat")


def test_nothing_else_imports_habitat_sim():
    pattern = re.compile(r"^\s*(import\s+habitat_sim|from\s+habitat_sim)", re.MULTILINE)
    offenders = []
    for folder in ("rendering", "pipeline", "training", "evaluation", "benchmarks"):
        for path in (PROJECT / folder).rglob("*.py"):
            if path.relative_to(PROJECT).as_posix() != "rendering/backends/habitat/renderer.py" and pattern.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(PROJECT)))
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# with habitat-sim
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer():
    r = create_renderer("habitat")
    yield r
    r.close()


@needs_habitat
def test_depth_is_z_depth_with_zero_for_no_surface_and_row_zero_on_top(renderer, tmp_path):
    # an open scene: a floor and one wall in front; the sky has no surface
    floor = trimesh.Trimesh([[-5, 0, 5], [5, 0, 5], [5, 0, -5], [-5, 0, -5]], [[0, 1, 2], [0, 2, 3]])
    wall = trimesh.Trimesh([[-5, 0, -3], [5, 0, -3], [5, 1, -3], [-5, 1, -3]], [[0, 1, 2], [0, 2, 3]])
    renderer.load_scene(SceneSpec("open", str(_write_glb(tmp_path / "open.glb", floor, wall))))
    w, h = 40, 30
    K = camera.intrinsics_from_fov(w, h, 60.0)
    pose = camera.look_at(np.array([0.0, 0.5, 0.0]), np.array([0.0, 0.5, -1.0]))
    view = renderer.render(K, pose, w, h)
    assert view.rgb.shape == (h, w, 3) and view.rgb.dtype == np.uint8
    assert view.depth.shape == (h, w) and view.depth.dtype == np.float32
    assert np.all(view.depth[:3] == 0.0)  # top rows look over the 1 m wall: nothing there
    # a wall pixel row: z-depth 3 m across the whole row (range would grow towards the sides)
    row = h // 2
    np.testing.assert_allclose(view.depth[row], 3.0, atol=1e-3)
    # bottom rows see the floor, closer than the wall
    assert 0 < view.depth[-1, w // 2] < 3.0


@needs_habitat
@pytest.mark.parametrize("size", [(48, 32), (32, 48)])
def test_depth_matches_analytic_room_for_general_poses_and_aspect_ratios(renderer, tmp_path, size):
    w, h = size
    renderer.load_scene(SceneSpec("room", str(_write_glb(tmp_path / "room.glb", _room()))))
    K = camera.intrinsics_from_fov(w, h, 75.0)
    poses = [
        camera.apply_orientation_noise(camera.look_at(np.array([1.0, 1.2, 2.0]), np.array([-2.0, 1.0, -3.0])), 0.05, 0.3, 0.2),
        camera.apply_orientation_noise(camera.look_at(np.array([-1.5, 1.7, -1.0]), np.array([3.0, 2.5, 1.0])), -0.1, -0.1, -0.6),
    ]
    for pose in poses:
        view = renderer.render(K, pose, w, h)
        ref = _room_depth(K, pose, w, h)
        err = np.abs(view.depth - ref)
        assert np.median(err) < 1e-3, np.median(err)
        assert np.mean(err < 5e-3) > 0.95  # only pixels on the room's edges may differ more
        assert np.all(view.depth > 0)


@needs_habitat
def test_one_simulator_reconfigured_across_scenes_and_resolutions(tmp_path):
    small = _write_glb(tmp_path / "small.glb", _room(np.array([-1.0, 0, -1.0]), np.array([1.0, 2.0, 1.0])))
    big = _write_glb(tmp_path / "big.glb", _room())
    K = camera.intrinsics_from_fov(32, 32, 60.0)
    pose = camera.look_at(np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, -1.0]))
    with create_renderer("habitat") as r:
        r.load_scene(SceneSpec("small", str(small)))
        sim = r._sim
        first = r.render(K, pose, 32, 32)
        assert first.depth[16, 16] == pytest.approx(1.0, abs=1e-3)
        r.load_scene(SceneSpec("big", str(big)))
        assert r.render(K, pose, 32, 32).depth[16, 16] == pytest.approx(4.0, abs=1e-3)
        wide = r.render(camera.intrinsics_from_fov(24, 16, 100.0), pose, 24, 16)
        assert wide.depth.shape == (16, 24)
        count = r.reconfigure_count
        for _ in range(3):  # alternating cameras (the sampler's screening) switch agents, no reconfigure
            assert r.render(K, pose, 32, 32).depth.shape == (32, 32)
            np.testing.assert_array_equal(r.render(camera.intrinsics_from_fov(24, 16, 100.0), pose, 24, 16).depth, wide.depth)
        assert r.reconfigure_count == count
        r.load_scene(SceneSpec("small", str(small)))
        again = r.render(K, pose, 32, 32)
        assert r._sim is sim  # never re-created
        np.testing.assert_array_equal(again.depth, first.depth)
        np.testing.assert_array_equal(again.rgb, first.rgb)


@needs_habitat
def test_navmesh_recomputed_sampled_deterministically_and_snapped(renderer, tmp_path):
    nav = renderer.load_scene(SceneSpec("room", str(_write_glb(tmp_path / "room.glb", _room()))))
    assert nav.area_m2 == pytest.approx((6 - 0.2) * (8 - 0.2), rel=0.05)  # floor minus the agent radius
    a = [nav.sample_point(np.random.default_rng(3)) for _ in range(3)]
    b = [nav.sample_point(np.random.default_rng(3)) for _ in range(3)]
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    pts = np.array([nav.sample_point(rng) for _ in range(100)])
    assert np.all(np.abs(pts[:, 1]) <= 0.011)  # within one cell height of the floor
    assert np.all((pts[:, [0, 2]] > ROOM_LO[[0, 2]]) & (pts[:, [0, 2]] < ROOM_HI[[0, 2]]))
    assert len(np.unique(pts.round(3), axis=0)) > 90
    inside = nav.snap_point(np.array([0.5, 1.0, 0.5]))
    np.testing.assert_allclose(inside[[0, 2]], [0.5, 0.5], atol=1e-5)
    far = nav.snap_point(np.array([40.0, 0.0, -40.0]))  # beyond Detour's search box
    assert np.all(np.isfinite(far)) and far[0] > 2.5 and far[2] < -3.5
    with pytest.raises(ValueError, match="NaN"):
        nav.snap_point(np.array([np.nan, 0.0, 0.0]))


@needs_habitat
def test_navmesh_file_next_to_the_scene_is_used(renderer, tmp_path):
    # save the navmesh of a small room next to a big room's GLB: the big room must get it
    small = _write_glb(tmp_path / "small.glb", _room(np.array([-1.0, 0, -1.0]), np.array([1.0, 2.0, 1.0])))
    small_area = renderer.load_scene(SceneSpec("small", str(small))).area_m2
    assert small_area < 4.0
    renderer._sim.pathfinder.save_nav_mesh(str(tmp_path / "big.navmesh"))
    nav = renderer.load_scene(SceneSpec("big", str(_write_glb(tmp_path / "big.glb", _room()))))
    assert nav.area_m2 == pytest.approx(small_area, rel=1e-6)
    (tmp_path / "big.navmesh").write_bytes(b"garbage")
    with pytest.raises(SceneLoadError, match="big.navmesh"):
        renderer.load_scene(SceneSpec("big", str(tmp_path / "big.glb")))


def test_up_axis_is_no_backend_option():
    # the scene spec states a scene's frame; a leftover backend option must not silently disagree
    with pytest.raises(ValueError, match="SceneSpec.up_axis"):
        create_renderer("habitat", up_axis="z")


@needs_habitat
def test_zup_scenes_from_their_spec_land_in_the_same_world_frame(renderer, tmp_path):
    yup = _write_glb(tmp_path / "yup.glb", _room())
    y_to_z = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # inverse of Z-up -> Y-up
    zup = _write_glb(tmp_path / "zup.glb", _room(), transform=y_to_z)
    zup_ply = tmp_path / "zup.ply"
    _room().apply_transform(y_to_z).export(zup_ply)  # other formats go through scene_glb_path
    K = camera.intrinsics_from_fov(32, 24, 70.0)
    pose = camera.look_at(np.array([1.0, 1.4, 1.0]), np.array([-2.0, 0.5, -3.0]))
    depths = {}
    # one renderer, Y-up and Z-up scenes in turn: the frame comes with each scene
    for name, path, up_axis in [("y", yup, "y"), ("z", zup, "z"), ("zply", zup_ply, "z"), ("z-as-y", zup, "y")]:
        renderer.load_scene(SceneSpec(name, str(path), up_axis=up_axis))
        depths[name] = renderer.render(K, pose, 32, 24).depth
    assert np.median(np.abs(depths["y"] - depths["z"])) < 1e-4
    assert np.median(np.abs(depths["y"] - depths["zply"])) < 1e-4
    assert np.median(np.abs(depths["y"] - depths["z-as-y"])) > 0.1


@needs_habitat
@pytest.mark.parametrize(
    "name, content, match",
    [
        ("missing.glb", None, "does not exist"),
        ("empty.glb", b"", "empty"),
        ("corrupt.glb", b"glTF\x02\x00\x00\x00garbage", "glTF|GLB"),
    ],
)
def test_bad_scene_files_raise_scene_load_error(renderer, tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SceneLoadError, match=match):
        renderer.load_scene(SceneSpec("bad", str(path)))


@needs_habitat
def test_scene_without_floor_is_a_clear_error_not_a_crash(renderer, tmp_path):
    wall = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    with pytest.raises(SceneLoadError, match="no floor"):  # habitat-sim itself would segfault here
        renderer.load_scene(SceneSpec("wall", str(_write_glb(tmp_path / "wall.glb", wall))))
    steep = trimesh.Trimesh([[0, 0, 0], [4, 0, 0], [4, 4, -2], [0, 4, -2]], [[0, 1, 2], [0, 2, 3]])
    with pytest.raises(SceneLoadError, match="navmesh"):
        renderer.load_scene(SceneSpec("steep", str(_write_glb(tmp_path / "steep.glb", steep))))
    # the renderer still works afterwards
    renderer.load_scene(SceneSpec("room", str(_write_glb(tmp_path / "room.glb", _room()))))
    K = camera.intrinsics_from_fov(16, 16, 60.0)
    assert renderer.render(K, camera.look_at(np.array([0, 1.0, 0]), np.array([0, 1.0, -1])), 16, 16).valid_fraction == 1.0


@needs_habitat
def test_bad_intrinsics_and_poses_are_rejected(renderer, tmp_path):
    renderer.load_scene(SceneSpec("room", str(_write_glb(tmp_path / "room.glb", _room()))))
    K = camera.intrinsics_from_fov(32, 32, 60.0)
    off = K.copy()
    off[0, 2] = 10.0
    pose = camera.look_at(np.array([0, 1.0, 0]), np.array([0, 1.0, -1]))
    with pytest.raises(ValueError, match="principal point"):
        renderer.render(off, pose, 32, 32)
    bad_pose = pose.copy()
    bad_pose[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        renderer.render(K, bad_pose, 32, 32)


@needs_habitat
def test_procedural_scene_loads_through_its_glb(tmp_path):
    pytest.importorskip("rendering.scenes.procedural")
    r = create_renderer("habitat", cache_dir=tmp_path / "cache")
    try:
        nav = r.load_scene(SceneSpec("proc", "procedural:3"))
        point = nav.sample_point(np.random.default_rng(0))
        K = camera.intrinsics_from_fov(32, 32, 60.0)
        pose = camera.look_at(point + [0, 1.5, 0], point + [1.0, 1.4, 0.3])
        assert r.render(K, pose, 32, 32).valid_fraction > 0.5
        assert list((tmp_path / "cache").glob("*.glb"))
    finally:
        r.close()



@needs_habitat
def test_habitat_state_round_trips_exactly_through_our_pose(renderer, tmp_path):
    # CroCo's metadata stores Habitat sensor states (position, (w, x, y, z)); re-rendering converts
    # them to OpenCV poses (rendering.backends.habitat.frame) and this backend back: Habitat must end up
    # with the very same sensor state.
    from rendering.backends.habitat.frame import habitat_state_to_opencv_pose

    renderer.load_scene(SceneSpec("room", str(_write_glb(tmp_path / "room.glb", _room()))))
    rng = np.random.default_rng(5)
    K = camera.intrinsics_from_fov(16, 16, 60.0)
    for _ in range(5):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        position = rng.uniform([-2, 0.5, -3], [2, 2.5, 3])
        renderer.render(K, habitat_state_to_opencv_pose(position, q), 16, 16)
        agent = renderer._agent_for((16, 16, 60.0))
        state = renderer._sim.get_agent(agent).get_state()
        sensor = next(iter(state.sensor_states.values()))
        got_q = np.array([sensor.rotation.w, sensor.rotation.x, sensor.rotation.y, sensor.rotation.z])
        np.testing.assert_allclose(np.asarray(sensor.position, float), position, atol=1e-6)
        assert min(np.abs(got_q - q).max(), np.abs(got_q + q).max()) < 1e-6


@needs_habitat
def test_recreate_after_scenes_bounds_the_scenes_one_simulator_holds(tmp_path):
    rooms = [_write_glb(tmp_path / f"r{i}.glb", _room(np.array([-1.0 - i, 0, -1.0]), np.array([1.0 + i, 2.0, 1.0]))) for i in range(3)]
    K = camera.intrinsics_from_fov(16, 16, 60.0)
    pose = camera.look_at(np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0]))
    with create_renderer("habitat", recreate_after_scenes=2) as r:
        depths = []
        for i, room in enumerate(rooms):
            r.load_scene(SceneSpec(f"r{i}", str(room)))
            if i == 0:
                first_sim = r._sim
            depths.append(r.render(K, pose, 16, 16).depth[8, 8])
        assert r._sim is not first_sim  # the third distinct scene got a fresh simulator
        np.testing.assert_allclose(depths, [1.0, 2.0, 3.0], atol=1e-3)
    with pytest.raises(ValueError, match="recreate_after_scenes"):
        create_renderer("habitat", recreate_after_scenes=-1)

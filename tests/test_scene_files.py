"""Real-world mesh files: every format and frame either loads right with the right options or is
refused with a one-line message naming the file and the cause (all files are made here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rendering.backend import SceneLoadError, SceneSpec
from rendering.scene_datasets import discover
from rendering.scenes import load_scene
from rendering.scenes.mesh_files import load_mesh_file
from scene_files import draco_glb, in_file_frame, lfs_pointer, multi_room, write, write_gltf_with_files


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    return write(multi_room(), tmp_path_factory.mktemp("room") / "flat.glb")


def _single_line(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_draco_glb_is_decoded_to_the_same_geometry(tmp_path: Path, room: Path):
    plain = load_scene(SceneSpec("plain", str(room), shading="unlit"))
    draco = load_scene(SceneSpec("draco", str(draco_glb(multi_room(), tmp_path / "draco.glb")), shading="unlit"))
    assert draco.facts["triangles"] == plain.facts["triangles"] == 240
    np.testing.assert_allclose(draco.mesh.bounds, plain.mesh.bounds, atol=1e-3)  # 16-bit quantisation
    assert abs(draco.navigable.area_m2 - plain.navigable.area_m2) < 0.1 * plain.navigable.area_m2
    colours = {tuple(np.asarray(g.visual.material.baseColorFactor)[:3]) for g in draco.mesh.geometry.values()}
    assert (150, 120, 90) in colours  # the floor's material survived decoding


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_z_up_file_loads_with_up_z_and_is_refused_as_y_up(tmp_path: Path, suffix: str):
    path = write(in_file_frame(multi_room(), "z"), tmp_path / f"flat_z{suffix}")
    loaded = load_scene(SceneSpec("z", str(path), up_axis="z"))
    np.testing.assert_allclose(loaded.mesh.bounds, multi_room().bounds, atol=1e-5)
    assert loaded.navigable.area_m2 > 20.0
    with pytest.raises(SceneLoadError) as err:
        load_scene(SceneSpec("z", str(path)))
    assert "does not look 'y'-up" in _single_line(err, path) and 'set up = "z"' in str(err.value)


def test_minus_z_up_and_upside_down_files_name_the_right_axis(tmp_path: Path):
    path = write(in_file_frame(multi_room(), "-z"), tmp_path / "flat_mz.glb")
    with pytest.raises(SceneLoadError, match='set up = "-z"'):
        load_scene(SceneSpec("mz", str(path), up_axis="z"))
    assert load_scene(SceneSpec("mz", str(path), up_axis="-z")).navigable.area_m2 > 20.0


def test_millimetre_glb_is_refused_naming_the_unit_and_loads_with_scale(tmp_path: Path):
    path = write(in_file_frame(multi_room(), "y", scale=0.001), tmp_path / "flat_mm.glb")
    with pytest.raises(SceneLoadError) as err:
        load_scene(SceneSpec("mm", str(path)))
    message = _single_line(err, path)
    assert "reads as millimetres" in message and "set scale = 0.001" in message and "8.0 x 2.8 x 8.0 m" in message
    given = load_scene(SceneSpec("mm", str(path), scale=0.001))
    auto = load_scene(SceneSpec("mm", str(path), scale="auto"))
    assert auto.facts["units"] == "auto: millimetres" and given.facts["units"] == "given"
    np.testing.assert_allclose(auto.mesh.bounds, multi_room().bounds, atol=1e-5)
    np.testing.assert_allclose(given.mesh.bounds, multi_room().bounds, atol=1e-5)


def test_centimetre_file_is_refused_naming_centimetres(tmp_path: Path):
    path = write(in_file_frame(multi_room(), "y", scale=0.01), tmp_path / "flat_cm.ply")
    with pytest.raises(SceneLoadError, match=r"reads as centimetres .*set scale = 0.01"):
        load_scene(SceneSpec("cm", str(path)))


def test_degenerate_triangles_are_dropped_and_non_finite_vertices_refused(tmp_path: Path):
    good = "v 0 0 0\nv 4 0 0\nv 0 0 4\nv 4 0 4\nf 1 3 2\nf 2 3 4\n"
    degenerate = "v 1 0 1\nv 2 0 2\nv 3 0 3\nf 5 6 7\nf 5 5 6\n"  # collinear, repeated corner
    (tmp_path / "degenerate.obj").write_text(good + degenerate)
    scene = load_mesh_file(tmp_path / "degenerate.obj")
    assert sum(len(g.faces) for g in scene.geometry.values()) == 2

    (tmp_path / "only_degenerate.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\nf 1 1 2\n")
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(tmp_path / "only_degenerate.obj")
    assert "no triangles left after removing 2 degenerate ones" in _single_line(err, tmp_path / "only_degenerate.obj")

    (tmp_path / "inf.obj").write_text(good + "v inf 0 0\nf 1 2 5\n")
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(tmp_path / "inf.obj")
    assert "1 vertices with NaN or infinite coordinates (first: vertex 4 = [inf, 0.0, 0.0])" in _single_line(
        err, tmp_path / "inf.obj")


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_zero_byte_file_and_lfs_pointer_are_named(tmp_path: Path, suffix: str):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(empty)
    assert "the file is empty (0 bytes)" in _single_line(err, empty)
    pointer = lfs_pointer(tmp_path / f"pointer{suffix}")
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(pointer)
    assert "Git LFS pointer" in _single_line(err, pointer) and "git lfs pull" in str(err.value)


def test_gltf_with_external_bin_and_textures_loads_and_a_missing_or_empty_bin_is_named(tmp_path: Path):
    from test_scenes import room_scene

    gltf = write_gltf_with_files(room_scene(), tmp_path / "ext")
    files = sorted(p.name for p in gltf.parent.iterdir())
    assert any(f.endswith(".bin") for f in files) and any(f.endswith((".png", ".jpg", ".jpeg")) for f in files)
    scene = load_mesh_file(gltf)
    textures = [g.visual.material.baseColorTexture for g in scene.geometry.values()]
    assert any(t is not None for t in textures)

    bin_name = json.loads(gltf.read_text())["buffers"][0]["uri"]
    (gltf.parent / bin_name).write_bytes(b"")
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(gltf)
    assert f"buffer 0: buffer file {bin_name!r} holds 0 bytes, the file declares" in _single_line(err, gltf)
    (gltf.parent / bin_name).unlink()
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(gltf)
    assert f"buffer 0 file {bin_name!r} is missing" in _single_line(err, gltf)


def test_ktx2_textures_are_refused_by_name(tmp_path: Path):
    doc = {"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_texture_basisu"],
           "images": [{"uri": "albedo.ktx2", "mimeType": "image/ktx2"}], "buffers": []}
    path = tmp_path / "basis.gltf"
    path.write_text(json.dumps(doc))
    with pytest.raises(SceneLoadError) as err:
        load_mesh_file(path)
    assert "KTX2/Basis Universal" in _single_line(err, path)


def test_vertex_colours_and_a_second_uv_set(tmp_path: Path):
    import trimesh
    from trimesh.visual import ColorVisuals

    floor = trimesh.creation.box(extents=[6, 0.1, 6])
    colours = (np.random.default_rng(0).random((len(floor.vertices), 4)) * 255).astype(np.uint8)
    floor.visual = ColorVisuals(floor, vertex_colors=colours)
    path = write(trimesh.Scene({"floor": floor}), tmp_path / "coloured.glb")
    geom = next(iter(load_mesh_file(path).geometry.values()))
    assert geom.visual.kind == "vertex"
    np.testing.assert_array_equal(np.unique(geom.visual.vertex_colors, axis=0), np.unique(colours, axis=0))

    # a TEXCOORD_1 next to TEXCOORD_0 (lightmaps) is ignored: the file loads with its first UV set
    from test_scenes import room_scene

    gltf = write_gltf_with_files(room_scene(), tmp_path / "uv2")
    doc = json.loads(gltf.read_text())
    for mesh in doc["meshes"]:
        for primitive in mesh["primitives"]:
            if "TEXCOORD_0" in primitive["attributes"]:
                primitive["attributes"]["TEXCOORD_1"] = primitive["attributes"]["TEXCOORD_0"]
    gltf.write_text(json.dumps(doc))
    scene = load_mesh_file(gltf)
    assert any(g.visual.material.baseColorTexture is not None for g in scene.geometry.values())


def test_meshes_dataset_kind_finds_obj_and_ply(tmp_path: Path):
    write(multi_room(), tmp_path / "a" / "flat.obj")
    write(multi_room(), tmp_path / "b.ply")
    write(multi_room(), tmp_path / "c.glb")
    found = discover("meshes", tmp_path)
    assert [s.spec.scene_id for s in found] == ["mesh-a-flat", "mesh-b", "mesh-c"]
    assert {s.spec.up_axis for s in found} == {"y"}


def test_config_scene_tables_and_dataset_options_reach_the_units(tmp_path: Path):
    from pipeline.config import ConfigError, run_config_from_dict
    from pipeline.corpus.plan import plan_units

    write(in_file_frame(multi_room(), "z", scale=0.001), tmp_path / "scans" / "office_mm.obj")
    write(in_file_frame(multi_room(), "z"), tmp_path / "zup" / "flat.ply")
    data = {"run_dir": "run", "corpus": {"pairs_per_scene": 2, "pairs_per_shard": 2, "scenes": {
        "uris": ["procedural:1", {"uri": "scans/office_mm.obj", "up": "z", "scale": 0.001, "name": "office"}],
        "datasets": [{"root": "zup", "kind": "meshes", "up": "z"}]}}}
    config = run_config_from_dict(data, tmp_path / "run.toml")
    units = {u.scene_id: u for u in plan_units(config.corpus)}
    assert set(units) == {"proc-000001", "office", "mesh-flat"}
    office = units["office"].scene
    assert (office.up_axis, office.scale, office.shading) == ("z", 0.001, "auto")
    assert office.uri == str(tmp_path / "scans" / "office_mm.obj")
    assert units["mesh-flat"].scene.up_axis == "z"
    assert load_scene(office).navigable.area_m2 > 20.0

    data["corpus"]["scenes"]["uris"][1]["up"] = "sideways"
    with pytest.raises(ConfigError, match=r"corpus.scenes.uris\[1\].*up = 'sideways': unknown up axis"):
        run_config_from_dict(data, tmp_path / "run.toml")


def test_render_pairs_takes_up_and_scale_and_refuses_the_wrong_axis(tmp_path: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = write(in_file_frame(multi_room(), "z", scale=0.01), tmp_path / "flat_cm_z.obj")
    common = ["render-pairs", str(path), "-n", "2", "--width", "48", "--height", "48", "--max-candidates", "20"]
    refused = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "a"), "--scale", "0.01"])
    assert refused.exit_code == 2 and 'set up = "z"' in refused.output
    assert not (tmp_path / "a").exists()
    done = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "b"), "--up", "z", "--scale", "auto",
                                    "--name", "flat"])
    assert done.exit_code == 0, done.output
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "b").glob("flat-*/meta.json"))]
    assert len(metas) == 2
    for meta in metas:  # cameras stand 1.2-1.8 m above the floor, inside the 8 x 8 m flat
        for pose in (meta["cam2world1"], meta["cam2world2"]):
            x, y, z = np.asarray(pose)[:3, 3]
            assert 1.1 < y < 1.9 and 0 < x < 8 and 0 < z < 8


@pytest.mark.slow
def test_lambert_shading_gives_flat_colours_detail_identical_in_every_render(tmp_path: Path, room: Path):
    from rendering import camera
    from rendering.backends.embedded import EmbeddedRenderer

    K = camera.intrinsics_from_fov(64, 64, 70.0)
    pose = camera.look_at(np.array([1.0, 1.5, 1.0]), np.array([3.9, 0.8, 3.9]))  # a corner with its door
    with EmbeddedRenderer() as renderer:
        renderer.load_scene(SceneSpec("unlit", str(room), shading="unlit"))
        unlit = renderer.render(K, pose, 64, 64).rgb
        renderer.load_scene(SceneSpec("auto", str(room), shading="auto"))
        shaded = renderer.render(K, pose, 64, 64).rgb
        renderer.load_scene(SceneSpec("auto", str(room), shading="auto"))
        again = renderer.render(K, pose, 64, 64).rgb
    np.testing.assert_array_equal(shaded, again)
    distinct = lambda rgb: len(np.unique(rgb.reshape(-1, 3), axis=0))  # noqa: E731
    assert distinct(shaded) > distinct(unlit)  # walls facing different ways now differ
    # the floor (facing up) keeps most of its colour, the walls are darker: 0.35 + 0.65 |n . L|
    assert shaded.reshape(-1, 3).max(axis=0).max() <= unlit.reshape(-1, 3).max(axis=0).max()


def test_render_pairs_renders_a_draco_glb(tmp_path: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = draco_glb(multi_room(), tmp_path / "flat_draco.glb")
    done = CliRunner().invoke(app, ["render-pairs", str(path), "-n", "2", "--width", "48", "--height", "48",
                                    "--max-candidates", "20", "--out", str(tmp_path / "out"), "--name", "flat"])
    assert done.exit_code == 0, done.output
    folders = sorted((tmp_path / "out").glob("flat-*"))
    metas = [json.loads((f / "meta.json").read_text()) for f in folders]
    assert len(metas) == 2
    from PIL import Image

    for folder in folders:  # real pictures and depths, not a blank frame
        assert np.asarray(Image.open(folder / "img1.jpg")).std() > 5.0
        assert (np.load(folder / "depth1.npy") > 0).mean() > 0.9
    for meta in metas:  # decoded geometry: cameras 1.2-1.8 m above the floor, inside the 8 x 8 m flat
        assert meta["covis"] > 0.0
        for pose in (meta["cam2world1"], meta["cam2world2"]):
            x, y, z = np.asarray(pose)[:3, 3]
            assert 1.1 < y < 1.9 and 0 < x < 8 and 0 < z < 8

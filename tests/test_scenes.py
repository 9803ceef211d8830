"""Scene loading: mesh files (GLB/glTF, OBJ+MTL, PLY), the render contract, GLB export, bad input."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial
from trimesh.visual.texture import TextureVisuals

from rendering.backend import SceneLoadError, SceneSpec
from rendering.navigable import NavigableGrid
from rendering.scenes import export_glb_bytes, load_scene, scene_glb_path
from rendering.scenes.mesh_files import Z_UP_TO_Y_UP, load_mesh_file


def checker_image(size: int = 8) -> Image.Image:
    yy, xx = np.mgrid[:size, :size]
    on = ((yy // 2 + xx // 2) % 2).astype(bool)
    arr = np.where(on[..., None], [250, 20, 20], [20, 20, 250]).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def room_scene() -> trimesh.Scene:
    """A closed 4 x 2.5 x 3 m room (inward faces) with a textured floor and a coloured box."""
    room = trimesh.creation.box(extents=[4.0, 2.5, 3.0])
    room.apply_translation([2.0, 1.25, 1.5])
    room.invert()
    uv = room.vertices[:, [0, 2]]  # planar UVs in metres
    room.visual = TextureVisuals(
        uv=uv, material=PBRMaterial(baseColorTexture=checker_image(), baseColorFactor=[255, 255, 255, 255])
    )
    block = trimesh.creation.box(extents=[0.5, 0.5, 0.5])
    block.apply_translation([1.0, 0.25, 1.0])
    block.visual = TextureVisuals(material=PBRMaterial(baseColorFactor=[10, 200, 30, 255]))
    return trimesh.Scene({"room": room, "block": block})


def assert_contract(scene: trimesh.Scene) -> None:
    """Every geometry satisfies the documented render contract."""
    assert len(scene.geometry) > 0
    for node in scene.graph.nodes_geometry:
        transform, _ = scene.graph[node]
        np.testing.assert_allclose(transform, np.eye(4))
    for geom in scene.geometry.values():
        assert isinstance(geom, trimesh.Trimesh) and len(geom.faces) > 0
        vis = geom.visual
        if isinstance(vis, TextureVisuals):
            mat = vis.material
            assert isinstance(mat, PBRMaterial)
            factor = np.asarray(mat.baseColorFactor)
            assert factor.dtype == np.uint8 and factor.shape == (4,)
            if mat.baseColorTexture is not None:
                assert mat.baseColorTexture.mode in ("RGB", "RGBA")
                assert vis.uv is not None and vis.uv.shape == (len(geom.vertices), 2)
        else:
            assert isinstance(vis, trimesh.visual.ColorVisuals)


def test_glb_round_trip_keeps_textures_and_materials(tmp_path: Path):
    path = tmp_path / "room.glb"
    path.write_bytes(export_glb_bytes(room_scene()))
    scene = load_mesh_file(path)
    assert_contract(scene)
    textured = [g for g in scene.geometry.values() if g.visual.material.baseColorTexture is not None]
    plain = [g for g in scene.geometry.values() if g.visual.material.baseColorTexture is None]
    assert len(textured) == 1 and len(plain) == 1
    np.testing.assert_array_equal(np.asarray(textured[0].visual.material.baseColorTexture), np.asarray(checker_image()))
    np.testing.assert_array_equal(plain[0].visual.material.baseColorFactor, [10, 200, 30, 255])
    # UVs survive (planar metres: u = x, v = z of each vertex).
    room = textured[0]
    np.testing.assert_allclose(room.visual.uv, room.vertices[:, [0, 2]], atol=1e-6)

    loaded = load_scene(SceneSpec("room", str(path)))
    assert loaded.scene_id == "room" and loaded.uri == str(path)
    assert loaded.navigable.area_m2 > 4.0
    assert not loaded.navigable.is_navigable(np.array([1.0, 0.0, 1.0]))  # under the block
    # A .glb is handed to file-loading backends as it is ...
    assert scene_glb_path(SceneSpec("room", str(path)), tmp_path / "cache") == path
    # ... unless shading changes its colours: then the shaded scene is exported.
    shaded = scene_glb_path(SceneSpec("room", str(path), shading="auto"), tmp_path / "cache")
    assert shaded != path and shaded.parent == tmp_path / "cache"


def _gltf_two_primitives() -> dict:
    """One glTF mesh with two primitives: a red quad (factor only) and a textured quad."""
    pos = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0], [1, 1, 0], [1, 2, 0], [0, 2, 0]],
        dtype=np.float32,
    )
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]] * 2, dtype=np.float32)
    idx_a = np.array([0, 2, 1, 0, 3, 2], dtype=np.uint16)
    idx_b = np.array([4, 5, 6, 4, 6, 7], dtype=np.uint16)
    blob = pos.tobytes() + uv.tobytes() + idx_a.tobytes() + idx_b.tobytes()
    png = io.BytesIO()
    checker_image().save(png, format="PNG")
    o_uv, o_a = pos.nbytes, pos.nbytes + uv.nbytes
    o_b = o_a + idx_a.nbytes
    return {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "buffers": [{"byteLength": len(blob), "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": pos.nbytes},
            {"buffer": 0, "byteOffset": o_uv, "byteLength": uv.nbytes},
            {"buffer": 0, "byteOffset": o_a, "byteLength": idx_a.nbytes},
            {"buffer": 0, "byteOffset": o_b, "byteLength": idx_b.nbytes},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3", "min": [0, 0, 0], "max": [1, 2, 1]},
            {"bufferView": 1, "componentType": 5126, "count": 8, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR"},
            {"bufferView": 3, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
        "images": [{"uri": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()}],
        "textures": [{"source": 0}],
        "materials": [
            {"pbrMetallicRoughness": {"baseColorFactor": [1.0, 0.0, 0.0, 1.0]}},
            {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}},
        ],
        "meshes": [{"primitives": [
            {"attributes": {"POSITION": 0}, "indices": 2, "material": 0},
            {"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 3, "material": 1},
        ]}],
    }


def test_multi_primitive_gltf_loads_every_primitive(tmp_path: Path):
    path = tmp_path / "two.gltf"
    path.write_text(json.dumps(_gltf_two_primitives()))
    scene = load_mesh_file(path)
    assert_contract(scene)
    assert len(scene.geometry) == 2
    by_texture = {g.visual.material.baseColorTexture is not None: g for g in scene.geometry.values()}
    np.testing.assert_array_equal(by_texture[False].visual.material.baseColorFactor, [255, 0, 0, 255])
    tex = by_texture[True]
    np.testing.assert_array_equal(np.asarray(tex.visual.material.baseColorTexture), np.asarray(checker_image()))
    assert tex.bounds[1][1] == pytest.approx(2.0)  # the upright quad, in place


def test_obj_with_mtl_and_texture(tmp_path: Path):
    checker_image().save(tmp_path / "tex.png")
    (tmp_path / "m.mtl").write_text("newmtl red\nKd 1 0 0\nnewmtl textured\nKd 0.8 0.8 0.8\nmap_Kd tex.png\n")
    (tmp_path / "m.obj").write_text(
        "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 1 0 1\nv 0 0 1\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl red\nf 1/1 3/3 2/2\nusemtl textured\nf 1/1 4/4 3/3\n"
    )
    scene = load_mesh_file(tmp_path / "m.obj")
    assert_contract(scene)
    mats = sorted((g.visual.material for g in scene.geometry.values()), key=lambda m: m.baseColorTexture is None)
    np.testing.assert_array_equal(np.asarray(mats[0].baseColorTexture), np.asarray(checker_image()))
    np.testing.assert_array_equal(mats[0].baseColorFactor, [255, 255, 255, 255])  # map_Kd not tinted
    np.testing.assert_array_equal(mats[1].baseColorFactor, [255, 0, 0, 255])


def test_ply_with_vertex_colours(tmp_path: Path):
    box = trimesh.creation.box()
    colours = np.zeros((8, 4), dtype=np.uint8)
    colours[:, 0] = np.arange(8) * 30
    colours[:, 1] = 200
    colours[:, 3] = 255
    box.visual.vertex_colors = colours
    box.export(tmp_path / "c.ply")
    scene = load_mesh_file(tmp_path / "c.ply")
    assert_contract(scene)
    (geom,) = scene.geometry.values()
    assert geom.visual.kind == "vertex"
    # Each loaded vertex keeps the colour of the vertex at its position.
    for v, c in zip(geom.vertices, geom.visual.vertex_colors):
        j = np.argmin(np.linalg.norm(box.vertices - v, axis=1))
        np.testing.assert_array_equal(c, colours[j])


def test_z_up_files_are_rotated_to_y_up(tmp_path: Path):
    tall = trimesh.creation.box(extents=[1.0, 2.0, 5.0])  # 5 m along Z
    tall.apply_translation([0.0, 0.0, 2.5])
    tall.export(tmp_path / "z.ply")
    scene = load_mesh_file(tmp_path / "z.ply", up_axis="z")
    lo, hi = scene.bounds
    np.testing.assert_allclose([lo[1], hi[1]], [0.0, 5.0], atol=1e-9)
    np.testing.assert_allclose([lo[2], hi[2]], [-1.0, 1.0], atol=1e-9)


def _y_and_z_up_room(tmp_path: Path) -> tuple[Path, Path]:
    """The same room as a +Y-up GLB and as a Z-up GLB (what Matterport-style datasets ship)."""
    y_path, z_path = tmp_path / "room_y.glb", tmp_path / "room_z.glb"
    y_path.write_bytes(export_glb_bytes(room_scene()))
    z_scene = room_scene()
    z_scene.apply_transform(np.linalg.inv(Z_UP_TO_Y_UP))
    z_path.write_bytes(export_glb_bytes(z_scene))
    return y_path, z_path


def test_scene_spec_up_axis_loads_z_up_files_in_the_y_up_world(tmp_path: Path):
    y_path, z_path = _y_and_z_up_room(tmp_path)
    y_up = load_scene(SceneSpec("y", str(y_path)), cache_dir=tmp_path / "cache")
    z_up = load_scene(SceneSpec("z", str(z_path), up_axis="z"), cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(z_up.mesh.bounds, y_up.mesh.bounds, atol=1e-6)
    np.testing.assert_allclose(z_up.navigable.area_m2, y_up.navigable.area_m2, rtol=1e-6)
    # Read with the wrong axis the file is a room on its side: other bounds, another floor cache entry.
    # (One bare box room is ambiguous: its walls are as level-looking as its floor; a furnished or
    # multi-room scene read on its side is refused, see test_scene_files.py.)
    as_y = load_scene(SceneSpec("z", str(z_path)), cache_dir=tmp_path / "cache")
    assert not np.allclose(as_y.mesh.bounds, y_up.mesh.bounds, atol=1e-3)
    assert len(list((tmp_path / "cache").glob("room_z-*-zup-floor-*.npz"))) == 1
    assert len(list((tmp_path / "cache").glob("room_z-*-yup-floor-*.npz"))) == 1


def test_scene_glb_path_exports_z_up_glb_files_turned_y_up(tmp_path: Path):
    y_path, z_path = _y_and_z_up_room(tmp_path)
    assert scene_glb_path(SceneSpec("z", str(z_path)), tmp_path / "cache") == z_path.resolve()
    exported = scene_glb_path(SceneSpec("z", str(z_path), up_axis="z"), tmp_path / "cache")
    assert exported.parent == tmp_path / "cache" and "zup" in exported.name
    np.testing.assert_allclose(load_mesh_file(exported).bounds, load_mesh_file(y_path).bounds, atol=1e-6)


@pytest.mark.parametrize("bad", ["Z", "w", "", None])
def test_scene_spec_rejects_an_unknown_up_axis_naming_the_scene(bad):
    with pytest.raises(ValueError, match=r"scene 'hm3d-00001'.*up_axis.*" + re.escape(repr(bad))):
        SceneSpec("hm3d-00001", "/data/a.glb", up_axis=bad)


def test_non_glb_files_export_to_cached_glb(tmp_path: Path):
    room = room_scene()
    obj_dir = tmp_path / "obj"
    obj_dir.mkdir()
    room.export(obj_dir / "room.obj")
    spec = SceneSpec("room", str(obj_dir / "room.obj"))
    glb = scene_glb_path(spec, tmp_path / "cache")
    assert glb.suffix == ".glb" and glb.parent == tmp_path / "cache"
    assert scene_glb_path(spec, tmp_path / "cache") == glb
    reloaded = load_mesh_file(glb)
    assert_contract(reloaded)
    np.testing.assert_allclose(reloaded.bounds, load_mesh_file(obj_dir / "room.obj").bounds)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.glb", None, "mesh file not found"),
        ("corrupt.glb", b"glTF\x02\x00\x00\x00garbage-bytes-that-are-no-mesh", "cannot read GLB"),
        ("corrupt.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n", "cannot read PLY"),
        ("notes.txt", b"hello", "unsupported mesh format '.txt'"),
        ("noext", b"hello", "unsupported mesh format"),
        ("empty.obj", b"# nothing here\n", "empty"),
    ],
)
def test_bad_files_raise_scene_load_error_naming_the_file(tmp_path: Path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SceneLoadError, match=message) as err:
        load_scene(SceneSpec("bad", str(path)))
    assert str(path) in str(err.value)
    if content is not None:
        assert path.read_bytes() == content  # the input is left untouched


def test_scene_without_floor_names_the_file(tmp_path: Path):
    low = trimesh.creation.box(extents=[3.0, 1.0, 3.0])  # a crawlspace: no head clearance
    low.invert()
    path = tmp_path / "nofloor.glb"
    path.write_bytes(export_glb_bytes(trimesh.Scene({"low": low})))
    with pytest.raises(SceneLoadError, match="no navigable floor") as err:
        load_scene(SceneSpec("nofloor", str(path)))
    assert str(path) in str(err.value)


def test_floor_cache_is_reused_and_survives_a_corrupt_entry(tmp_path: Path):
    path = tmp_path / "room.glb"
    path.write_bytes(export_glb_bytes(room_scene()))
    cache = tmp_path / "cache"
    first = load_scene(SceneSpec("room", str(path)), cache_dir=cache)
    (entry,) = cache.glob("*.npz")
    np.testing.assert_array_equal(NavigableGrid.load(entry).heights, first.navigable.heights)
    # A cached grid is what the next load returns (prove it by planting a recognisable one).
    planted = NavigableGrid.from_heights(np.zeros((3, 3)), (0.0, 0.0), 0.5)
    planted.save(entry)
    assert load_scene(SceneSpec("room", str(path)), cache_dir=cache).navigable.area_m2 == planted.area_m2
    entry.write_bytes(b"torn")
    again = load_scene(SceneSpec("room", str(path)), cache_dir=cache)
    np.testing.assert_array_equal(again.navigable.heights, first.navigable.heights)
    np.testing.assert_array_equal(NavigableGrid.load(entry).heights, first.navigable.heights)
    with pytest.raises(ValueError, match="not a navigable grid file"):
        NavigableGrid.load(tmp_path / "room.glb")

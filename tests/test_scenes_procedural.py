"""Procedural scenes: determinism, GLB round trip, exact navigable floor, URI parameters, textures."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from trimesh.visual.material import PBRMaterial
from trimesh.visual.texture import TextureVisuals

from rendering.backend import SceneLoadError, SceneSpec
from rendering.navigable import find_navigable_floor
from rendering.scenes import LoadedScene, export_glb_bytes, load_scene, scene_glb_path
from rendering.scenes import textures
from rendering.scenes.mesh_files import load_mesh_file
from rendering.scenes.procedural import (
    ProceduralSceneParams,
    generate_procedural_scene,
    parse_procedural_uri,
    procedural_uri,
)

SMALL = ProceduralSceneParams(rooms=2, objects=6, texture_size=32)


def test_same_seed_same_glb_bytes_different_seeds_differ():
    a = export_glb_bytes(generate_procedural_scene(5, SMALL)[0])
    b = export_glb_bytes(generate_procedural_scene(5, SMALL)[0])
    c = export_glb_bytes(generate_procedural_scene(6, SMALL)[0])
    assert a == b
    assert a != c
    grid_a = generate_procedural_scene(5, SMALL)[1]
    grid_c = generate_procedural_scene(6, SMALL)[1]
    assert not (grid_a.shape == grid_c.shape and np.array_equal(grid_a.mask, grid_c.mask))


@pytest.mark.slow
def test_glb_bytes_do_not_depend_on_the_process(tmp_path: Path):
    """Workers in other processes (other hash seeds) must export the very same file."""
    code = (
        "import hashlib, sys\n"
        "from rendering.scenes import export_glb_bytes\n"
        "from rendering.scenes.procedural import generate_procedural_scene, ProceduralSceneParams\n"
        "m, _ = generate_procedural_scene(5, ProceduralSceneParams(rooms=2, objects=6, texture_size=32))\n"
        "sys.stdout.write(hashlib.sha256(export_glb_bytes(m)).hexdigest())\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = hashlib.sha256(export_glb_bytes(generate_procedural_scene(5, SMALL)[0])).hexdigest()
    assert out.stdout == here


def test_glb_round_trip_keeps_geometry_uvs_and_textures(tmp_path: Path):
    mesh, _ = generate_procedural_scene(11, SMALL)
    path = tmp_path / "scene.glb"
    path.write_bytes(export_glb_bytes(mesh))
    back = load_mesh_file(path)
    assert len(back.geometry) == len(mesh.geometry)
    assert list(back.geometry) == list(mesh.geometry)  # names and order survive
    for (name, g), g2 in zip(mesh.geometry.items(), back.geometry.values()):
        assert isinstance(g.visual, TextureVisuals) and isinstance(g.visual.material, PBRMaterial)
        # Generator output is float32-exact, so a GLB reload gives the same numbers.
        np.testing.assert_array_equal(g2.vertices, g.vertices, err_msg=name)
        np.testing.assert_array_equal(g2.faces, g.faces, err_msg=name)
        np.testing.assert_allclose(g2.visual.uv, g.visual.uv, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(
            np.asarray(g2.visual.material.baseColorTexture), np.asarray(g.visual.material.baseColorTexture)
        )
        np.testing.assert_array_equal(g2.visual.material.baseColorFactor, g.visual.material.baseColorFactor)


def test_scene_mixes_photographs_and_patterns_with_metre_uvs():
    mesh, _ = generate_procedural_scene(2, ProceduralSceneParams(rooms=3, objects=12, texture_size=32))
    names = list(mesh.geometry)
    assert any("photo-" in n for n in names), names
    assert any(p in n for n in names for p in textures.PATTERNS), names
    for role in ("floor", "wall", "ceiling", "object", "picture"):
        assert any(role in n for n in names), (role, names)
    floors = [g for n, g in mesh.geometry.items() if "floor" in n]
    for g in floors:  # floor UVs are metres / metres-per-repeat: proportional to x and z
        ratio = g.visual.uv[:, 0] / np.where(g.vertices[:, 0] == 0, np.nan, g.vertices[:, 0])
        assert np.nanstd(ratio) < 1e-4 and np.nanmean(ratio) > 0
    for n, g in mesh.geometry.items():
        image = np.asarray(g.visual.material.baseColorTexture)
        assert image.shape == (32, 32, 3) and image.std() > 2.0, n  # not a flat colour


def test_every_shipped_photograph_loads_offline_and_textures_tile():
    for name in textures.PHOTO_FILES:
        photo = textures.load_photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and photo.shape[0] >= 128
    assert set(textures.SURFACE_PHOTO_FILES) <= set(textures.PHOTO_FILES)
    assert set(textures.PICTURE_PHOTO_FILES) <= set(textures.PHOTO_FILES)
    noise = textures.value_noise(np.random.default_rng(0), 64, octaves=3, base_cells=4)
    seam = np.abs(noise[:, 0] - noise[:, -1]).mean()
    inner = np.abs(np.diff(noise, axis=1)).mean()
    assert seam < 3 * inner  # wrapping around is no bigger a step than moving one pixel inside
    for pattern in textures.PATTERNS:
        img = textures.pattern_texture(np.random.default_rng(1), 32, pattern)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown texture pattern"):
        textures.pattern_texture(np.random.default_rng(1), 32, "plaid")


def test_layout_floor_is_exact_and_agrees_with_the_floor_finder():
    for seed in (0, 4, 9):
        params = ProceduralSceneParams(rooms=1 + seed % 3, objects=10, texture_size=32)
        mesh, grid = generate_procedural_scene(seed, params)
        pts = grid.sample_points(np.random.default_rng(seed), 2000)
        np.testing.assert_array_equal(pts[:, 1], 0.0)
        found = find_navigable_floor(mesh, scene_name=f"procedural:{seed}")
        assert found.shape == grid.shape and np.allclose(found.origin_xz, grid.origin_xz)
        # The finder works from triangles alone and is at most one cell more conservative.
        assert not np.any(found.mask & ~grid.mask)
        assert found.area_m2 >= 0.75 * grid.area_m2


def test_rooms_are_connected_through_doors_and_furniture_leaves_floor():
    params = ProceduralSceneParams(rooms=4, objects=40, texture_size=32)
    mesh, grid = generate_procedural_scene(3, params)
    labels, n = ndimage.label(grid.mask)
    biggest = np.bincount(labels[grid.mask]).argmax()
    main = labels == biggest
    # Every room's interior has floor in the main connected region (door keep-out zones work).
    floors = [g for name, g in mesh.geometry.items() if "floor" in name]
    room_quads = np.concatenate([g.vertices for g in floors]).reshape(-1, 4, 3)
    assert len(room_quads) == 4
    total_floor = 0.0
    for quad in room_quads:
        (x0, _, z0), (x1, _, z1) = quad.min(axis=0), quad.max(axis=0)
        total_floor += (x1 - x0) * (z1 - z0)
        centres = grid.cell_centres()
        inside = (centres[:, 0] > x0) & (centres[:, 0] < x1) & (centres[:, 2] > z0) & (centres[:, 2] < z1)
        rows, cols, _ = grid.cell_index(centres[inside])
        assert np.any(main[rows, cols])
    assert grid.area_m2 > 0.35 * total_floor


def test_load_scene_and_glb_path_for_procedural_uris(tmp_path: Path):
    uri = "procedural:8?rooms=2&objects=5&texture_size=32"
    loaded = load_scene(SceneSpec("p8", uri))
    assert isinstance(loaded, LoadedScene) and loaded.scene_id == "p8" and loaded.uri == uri
    _, grid = generate_procedural_scene(8, ProceduralSceneParams(rooms=2, objects=5, texture_size=32))
    np.testing.assert_array_equal(loaded.navigable.heights, grid.heights)

    path = scene_glb_path(SceneSpec("p8", uri), tmp_path)
    assert path.parent == tmp_path and path.suffix == ".glb"
    assert path.read_bytes() == export_glb_bytes(loaded.mesh)
    mtime = path.stat().st_mtime_ns
    assert scene_glb_path(SceneSpec("p8", uri), tmp_path) == path  # reused, not rewritten
    assert path.stat().st_mtime_ns == mtime
    other = scene_glb_path(SceneSpec("p8", "procedural:8?rooms=3&objects=5&texture_size=32"), tmp_path)
    assert other != path


def test_uri_parsing_and_canonical_form():
    seed, params = parse_procedural_uri("procedural:7?rooms=3&objects=12")
    assert seed == 7 and params.rooms == 3 and params.objects == 12
    assert parse_procedural_uri("procedural:0") == (0, ProceduralSceneParams())
    assert procedural_uri(7, params) == "procedural:7?objects=12&rooms=3"
    assert procedural_uri(7, ProceduralSceneParams(rooms=2)) == "procedural:7"  # defaults omitted
    assert parse_procedural_uri(procedural_uri(3, SMALL)) == (3, SMALL)
    assert params.digest() == ProceduralSceneParams(objects=12, rooms=3).digest()
    assert params.digest() != SMALL.digest()


@pytest.mark.parametrize(
    "uri, message",
    [
        ("procedural:", "seed must be a non-negative integer"),
        ("procedural:-3", "seed must be a non-negative integer"),
        ("procedural:abc", "seed must be a non-negative integer"),
        ("procedural:1?rooms=0", "rooms"),
        ("procedural:1?rooms=two", "rooms"),
        ("procedural:1?rooms=2.5", "rooms"),
        ("procedural:1?colour=red", "colour"),
        ("procedural:1?rooms=2&rooms=3", "given twice"),
        ("procedural:1?room_size_min=8&room_size_max=4", "room_size_min"),
        ("procedural:1?texture_size=", "texture_size"),
        ("procedural:1?rooms", "malformed query"),
    ],
)
def test_bad_procedural_uris_raise_clear_errors(uri: str, message: str):
    with pytest.raises(SceneLoadError, match=message) as err:
        load_scene(SceneSpec("bad", uri))
    assert uri in str(err.value)


def test_generation_is_fast_enough():
    generate_procedural_scene(0, ProceduralSceneParams())  # warm the photograph cache
    start = time.perf_counter()
    generate_procedural_scene(1, ProceduralSceneParams())
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"default scene took {elapsed:.2f} s"  # ~0.3 s on 2 shared cores

"""The banded floor search finds exactly the grid of the first, all-pairs one (tests/floor_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

import rendering.navigable as navigable
from floor_reference import reference_floor
from rendering.navigable import find_navigable_floor
from rendering.scenes.procedural import ProceduralSceneParams, generate_procedural_scene
from scene_files import multi_room
from test_navigable import box_room


def _box(lo, hi) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    box = trimesh.creation.box(extents=hi - lo)
    box.apply_translation((lo + hi) / 2)
    return box


def storey(size: float = 16.0, seed: int = 0, turn_deg: float = 0.0) -> trimesh.Scene:
    """A furnished two-level storey: quad-grid floor, ceiling and a mezzanine, walls with doors,
    boxes (some touching, some stacked, one coplanar with the floor), a 20-degree ramp and a
    40-degree one (too steep), a loose triangle soup; optionally turned about the vertical axis so
    that no edge is axis-aligned."""
    rng = np.random.default_rng(seed)
    parts: list[trimesh.Trimesh] = []
    for height, flip, quads in ((0.0, False, 32), (3.0, True, 24)):
        xs = np.linspace(0, size, quads + 1)
        gx, gz = np.meshgrid(xs, xs)
        vertices = np.stack([gx.ravel(), np.full(gx.size, height), gz.ravel()], axis=1)
        idx = np.arange(gx.size).reshape(quads + 1, quads + 1)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
        parts.append(trimesh.Trimesh(vertices, faces[:, ::-1] if flip else faces, process=False))
    mezzanine = _box([1.0, 1.4, 1.0], [6.0, 1.5, 5.0])  # a slab: floor on top, low ceiling below
    parts.append(mezzanine)
    for k in range(1, 4):
        at = k * size / 4
        for s in np.arange(0.0, size, 1.0):
            if int(s) % 5 == 2:
                continue  # a door
            parts.append(_box([s, 0, at - 0.05], [s + 1.0, 3.0, at + 0.05]))
            parts.append(_box([at - 0.05, 0, s], [at + 0.05, 3.0, s + 1.0]))
    for _ in range(40):
        w, h, d = rng.uniform(0.3, 1.5, 3)
        x, z = rng.uniform(0.5, size - 2.0, 2)
        y = 0.0 if rng.random() < 0.8 else rng.uniform(0.3, 0.9)
        parts.append(_box([x, y, z], [x + w, y + h, z + d]))
    parts.append(_box([2.0, -0.2, 9.0], [3.0, 0.0, 10.0]))  # its top is coplanar with the floor
    for slope_deg, z0 in ((20.0, 11.0), (40.0, 13.0)):
        rise = 1.2 * np.tan(np.radians(slope_deg))
        ramp = trimesh.Trimesh([[9, 0, z0], [9, 0, z0 + 1.5], [10.2, rise, z0], [10.2, rise, z0 + 1.5]],
                               [[0, 1, 2], [2, 1, 3]], process=False)
        parts.append(ramp)
    soup = rng.uniform(0, 1, (300, 3, 3)) * [0.6, 1.2, 0.6] + rng.uniform([0, 0, 0], [size - 1, 1.5, size - 1], (300, 1, 3))
    parts.append(trimesh.Trimesh(soup.reshape(-1, 3), np.arange(900).reshape(-1, 3), process=False))
    scene = trimesh.Scene()
    turn = trimesh.transformations.rotation_matrix(np.radians(turn_deg), [0, 1, 0], [size / 2, 0, size / 2])
    for i, part in enumerate(parts):
        scene.add_geometry(part, node_name=f"part{i}", transform=turn)
    return scene


def uneven_ground(seed: int = 2) -> trimesh.Scene:
    """A scan-like room: a 10 x 10 m floor and ceiling of jittered heights (every triangle sloped,
    some beyond 30 degrees), a tilted box room inside it and a hill."""
    rng = np.random.default_rng(seed)
    parts = []
    for height, flip in ((0.0, False), (2.7, True)):
        n = 40
        xs = np.linspace(0, 10, n + 1)
        gx, gz = np.meshgrid(xs, xs)
        gy = height + rng.normal(0, 0.03, gx.shape)
        gy[rng.random(gx.shape) < 0.02] += 0.2  # a few spikes too steep to stand on
        vertices = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
        idx = np.arange(gx.size).reshape(n + 1, n + 1)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
        parts.append(trimesh.Trimesh(vertices, faces[:, ::-1] if flip else faces, process=False))
    room = trimesh.creation.box(extents=[3.0, 2.0, 2.5]).subdivide().subdivide()
    room.invert()
    tilt = trimesh.transformations.rotation_matrix(np.radians(4.0), [1.0, 0.0, 0.6])
    room.apply_transform(trimesh.transformations.translation_matrix([6.5, 1.05, 6.0]) @ tilt)
    parts.append(room)
    hill = trimesh.creation.icosphere(subdivisions=3, radius=1.5)
    hill.apply_translation([2.5, -1.1, 7.0])
    parts.append(hill)
    return trimesh.Scene(parts)


def _procedural(seed: int) -> trimesh.Scene:
    mesh, _ = generate_procedural_scene(seed, ProceduralSceneParams(rooms=1 + seed % 3, objects=10, texture_size=32))
    return mesh


MESHES = {
    "box room": lambda: box_room(),
    "thick wall": lambda: box_room(with_table=False, thick_wall=True),
    "multi-room flat": multi_room,
    "procedural 0": lambda: _procedural(0),
    "procedural 4": lambda: _procedural(4),
    "procedural 9": lambda: _procedural(9),
    "storey": lambda: storey(),
    "turned storey": lambda: storey(seed=1, turn_deg=17.0),
    "uneven ground": uneven_ground,
}


def _assert_same_grid(found, expected) -> None:
    assert found.shape == expected.shape and found.cell_size == expected.cell_size
    np.testing.assert_array_equal(found.origin_xz, expected.origin_xz)
    # Byte equality: the same cells, the same heights, even the sign of a zero.
    assert found.heights.tobytes() == expected.heights.tobytes(), (
        f"{int(np.sum(found.mask != expected.mask))} cells differ in navigability")


@pytest.mark.parametrize("name", list(MESHES))
def test_banded_search_equals_the_all_pairs_search(name, monkeypatch):
    mesh = MESHES[name]()
    expected = reference_floor(mesh, scene_name=name)
    assert expected.area_m2 > 1.0  # a floor worth comparing
    _assert_same_grid(find_navigable_floor(mesh, scene_name=name), expected)
    # Bands of a few rows (many bands, and rows over the budget on their own) change nothing.
    monkeypatch.setattr(navigable, "_MAX_PAIRS_PER_BAND", 400)
    _assert_same_grid(find_navigable_floor(mesh, scene_name=name), expected)
    # Nor do other agent sizes (no erosion, no region filter: the raw candidate heights).
    raw = dict(agent_radius=0.0, min_region_area_m2=0.0, agent_height=1.0, step_height=0.3)
    _assert_same_grid(find_navigable_floor(mesh, scene_name=name, **raw), reference_floor(mesh, **raw))

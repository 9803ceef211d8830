"""Navigable floor: the grid's sampling/snapping invariants and floor finding on analytic rooms."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from rendering.backend import NavigableSpace, SceneLoadError
from rendering.navigable import NavigableGrid, find_navigable_floor

ROOM_L, ROOM_W, ROOM_H = 4.0, 3.0, 2.5
TABLE_MIN = np.array([1.5, 0.0, 1.1])  # x, y, z
TABLE_MAX = np.array([2.5, 0.75, 1.9])


def box_room(with_table: bool = True, thick_wall: bool = False) -> trimesh.Scene:
    """A closed 4 x 3 x 2.5 m room (faces pointing inwards) with an optional 1 x 0.8 m table."""
    room = trimesh.creation.box(extents=[ROOM_L, ROOM_H, ROOM_W])
    room.apply_translation([ROOM_L / 2, ROOM_H / 2, ROOM_W / 2])
    room.invert()
    parts = [room]
    if with_table:
        table = trimesh.creation.box(extents=TABLE_MAX - TABLE_MIN)
        table.apply_translation((TABLE_MIN + TABLE_MAX) / 2)
        parts.append(table)
    if thick_wall:  # a solid 1.2 m thick, 2 m high partition along z = 1.5 (closed, faces out)
        wall = trimesh.creation.box(extents=[ROOM_L, 2.0, 1.2])
        wall.apply_translation([ROOM_L / 2, 1.0, 1.5])
        parts.append(wall)
    return trimesh.Scene(parts)


def test_grid_sample_and_snap_invariants():
    heights = np.full((5, 6), np.nan)
    heights[1:4, 1:3] = 0.0
    heights[2, 4] = 0.1
    grid = NavigableGrid.from_heights(heights, origin_xz=(-1.0, 2.0), cell_size=0.5)
    assert isinstance(grid, NavigableSpace)
    assert grid.area_m2 == pytest.approx(7 * 0.25)

    rng = np.random.default_rng(0)
    pts = grid.sample_points(rng, 4000)
    assert np.all(grid.is_navigable(pts))
    np.testing.assert_array_equal(pts[:, 1], grid.height_at(pts))
    # Uniform over area: the lone raised cell gets ~1/7 of the samples.
    share = np.mean(pts[:, 1] == 0.1)
    assert abs(share - 1 / 7) < 0.03
    one = grid.sample_point(np.random.default_rng(1))
    assert one.shape == (3,) and grid.is_navigable(one)
    np.testing.assert_array_equal(one, grid.sample_point(np.random.default_rng(1)))

    # Points already navigable keep X/Z and take the floor height.
    snapped = grid.snap_point(pts[:50] + [0.0, 3.0, 0.0])
    np.testing.assert_allclose(snapped, pts[:50])
    # Far-away points land inside a navigable cell, next to the nearest one.
    far = np.array([[-50.0, 7.0, 2.1], [30.0, -2.0, 3.3], [0.2, 0.0, 100.0]])
    snapped = grid.snap_point(far)
    assert snapped.shape == far.shape and np.all(grid.is_navigable(snapped))
    centres = grid.cell_centres()
    for p, q in zip(far, snapped):
        nearest = np.min(np.linalg.norm(centres[:, [0, 2]] - p[[0, 2]], axis=1))
        assert np.linalg.norm(q[[0, 2]] - p[[0, 2]]) <= nearest + 1e-9
    assert grid.snap_point(far[0]).shape == (3,)


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="cell_size"):
        NavigableGrid.from_heights(np.zeros((2, 2)), (0, 0), 0.0)
    with pytest.raises(ValueError, match="2-D"):
        NavigableGrid.from_heights(np.zeros(4), (0, 0), 0.1)
    grid = NavigableGrid.from_heights(np.zeros((2, 2)), (0, 0), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        grid.snap_point(np.array([np.nan, 0, 0]))
    empty = NavigableGrid.from_heights(np.full((2, 2), np.nan), (0, 0), 0.1)
    with pytest.raises(SceneLoadError, match="empty"):
        empty.sample_point(np.random.default_rng(0))


def test_box_room_with_table():
    grid = find_navigable_floor(box_room(), min_region_area_m2=0.5)
    pts = grid.sample_points(np.random.default_rng(0), 5000)
    np.testing.assert_allclose(pts[:, 1], 0.0, atol=1e-9)  # the floor, never the table top
    r = 0.2
    # Eroded from the walls by the agent radius.
    assert pts[:, 0].min() >= r and pts[:, 0].max() <= ROOM_L - r
    assert pts[:, 2].min() >= r and pts[:, 2].max() <= ROOM_W - r
    # Neither under the table nor within the agent radius of it.
    dx = np.maximum(np.maximum(TABLE_MIN[0] - pts[:, 0], pts[:, 0] - TABLE_MAX[0]), 0)
    dz = np.maximum(np.maximum(TABLE_MIN[2] - pts[:, 2], pts[:, 2] - TABLE_MAX[2]), 0)
    assert np.hypot(dx, dz).min() >= r - 1e-9
    # Most of the free floor is kept (area of room minus eroded margins and table).
    free = (ROOM_L - 2 * r) * (ROOM_W - 2 * r) - (1.0 + 2 * r) * (0.8 + 2 * r)
    assert 0.8 * free <= grid.area_m2 <= free + 1e-9
    # Floor under the table and the table top itself are not navigable.
    assert not grid.is_navigable(np.array([2.0, 0.0, 1.5]))
    assert np.isnan(grid.height_at(np.array([2.0, 0.75, 1.5])))


def test_big_table_top_is_dropped_by_region_area():
    # The table top (0.96 m^2 after erosion) is free above but too small; it must not be kept.
    grid = find_navigable_floor(box_room(), min_region_area_m2=1.0)
    assert np.nanmax(grid.heights) == 0.0
    grid_small = find_navigable_floor(box_room(), min_region_area_m2=0.05)
    assert np.nanmax(grid_small.heights) == pytest.approx(0.75)  # table top is its own region


def test_inside_thick_solid_is_not_floor():
    grid = find_navigable_floor(box_room(with_table=False, thick_wall=True), min_region_area_m2=0.5)
    pts = grid.sample_points(np.random.default_rng(0), 3000)
    inside = (pts[:, 2] > 0.9) & (pts[:, 2] < 2.1)
    assert not np.any(inside)
    # Without the inside-a-solid rule the floor inside the partition (whose only surface in the
    # head band is its outer skin) would be a 3.4 x 0.6 m navigable strip.
    assert np.nanmax(grid.heights) == 0.0
    assert grid.area_m2 > 2 * 3.4 * 0.4


def test_low_ceiling_and_no_floor_raise():
    low = trimesh.creation.box(extents=[3.0, 1.2, 3.0])
    low.apply_translation([1.5, 0.6, 1.5])
    low.invert()
    with pytest.raises(SceneLoadError, match="crawlspace: no navigable floor"):
        find_navigable_floor(trimesh.Scene([low]), scene_name="crawlspace")
    wall = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [1, 2, 0]], faces=[[0, 1, 2]])
    with pytest.raises(SceneLoadError, match="upright: no navigable floor"):
        find_navigable_floor(trimesh.Scene([wall]), scene_name="upright")
    with pytest.raises(SceneLoadError, match="void: no navigable floor"):
        find_navigable_floor(trimesh.Scene(), scene_name="void")


def test_floor_finding_is_fast_on_200k_triangles():
    room = trimesh.creation.box(extents=[10.0, 2.6, 8.0])
    room.apply_translation([5.0, 1.3, 4.0])
    room.invert()
    for _ in range(7):
        room = room.subdivide()
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.4)
    sphere.apply_translation([5.0, 1.0, 4.0])
    scene = trimesh.Scene([room, sphere])
    n = sum(len(g.faces) for g in scene.geometry.values())
    assert n > 200_000
    start = time.perf_counter()
    grid = find_navigable_floor(scene)
    elapsed = time.perf_counter() - start
    assert elapsed < 8.0, f"{n} triangles took {elapsed:.2f} s"
    assert not grid.is_navigable(np.array([5.0, 0.0, 4.0]))  # under the sphere
    assert grid.is_navigable(np.array([2.0, 0.0, 2.0]))


def test_floor_finder_rejects_bad_parameters_and_huge_extents():
    with pytest.raises(ValueError, match="cell_size"):
        find_navigable_floor(box_room(), cell_size=0.0)
    with pytest.raises(ValueError, match="step_height"):
        find_navigable_floor(box_room(), step_height=2.0)
    stray = trimesh.Trimesh(vertices=[[5000.0, 0, 5000.0], [5000.1, 0, 5000.0], [5000.0, 0, 5000.1]], faces=[[0, 2, 1]])
    scene = box_room()
    scene.add_geometry(stray)
    with pytest.raises(SceneLoadError, match="too large"):
        find_navigable_floor(scene, scene_name="stray")

"""The floor search as first written, kept to check the banded one in rendering/navigable.py.

It expands every (triangle, cell) pair of the whole mesh at once (in chunks) and groups them per
cell afterwards: slow and memory-hungry on big meshes, but simple. ``reference_floor`` returns the
grid the same way (erosion and region filtering are the shared functions of rendering.navigable),
so the two must agree cell for cell.
"""

from __future__ import annotations

import numpy as np
import trimesh

from rendering.backend import SceneLoadError
from rendering.navigable import MAX_GRID_CELLS, NavigableGrid, _erode, keep_large_regions, world_triangles

_MAX_PAIRS_PER_CHUNK = 250_000


def _triangle_cell_pairs(tri_xz: np.ndarray, origin: np.ndarray, s: float, shape: tuple[int, int]):
    """Yield (tri_index, rows, cols) for every grid cell in each triangle's XZ bounding box, in chunks."""
    lo = np.floor((tri_xz.min(axis=1) - origin) / s).astype(np.int64)
    hi = np.floor((tri_xz.max(axis=1) - origin) / s).astype(np.int64)
    lo = np.clip(lo, 0, [shape[1] - 1, shape[0] - 1])
    hi = np.clip(hi, 0, [shape[1] - 1, shape[0] - 1])
    width = hi[:, 0] - lo[:, 0] + 1
    count = width * (hi[:, 1] - lo[:, 1] + 1)
    ends = np.cumsum(count)
    start = 0
    while start < len(count):
        base = ends[start - 1] if start > 0 else 0
        stop = int(np.searchsorted(ends, base + _MAX_PAIRS_PER_CHUNK, side="right"))
        stop = max(stop, start + 1)
        idx = np.arange(start, stop)
        n = count[idx]
        tri = np.repeat(idx, n)
        local = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        cols = lo[tri, 0] + local % width[tri]
        rows = lo[tri, 1] + local // width[tri]
        yield tri, rows, cols
        start = stop


def _query_slices(n: np.ndarray, budget: int = _MAX_PAIRS_PER_CHUNK):
    """Consecutive query ranges whose (query, item) pair counts stay within ``budget``."""
    ends = np.cumsum(n)
    start = 0
    while start < len(n):
        base = ends[start - 1] if start > 0 else 0
        stop = max(int(np.searchsorted(ends, base + budget, side="right")), start + 1)
        yield start, stop
        start = stop


def _group_any(
    query_cells: np.ndarray, item_cells_sorted: np.ndarray, test
) -> np.ndarray:
    """For each query, whether ``test(query_idx, item_idx)`` holds for any item in the same cell
    (queries handled in slices, so memory stays bounded whatever the item count per cell)."""
    starts = np.searchsorted(item_cells_sorted, query_cells, side="left")
    stops = np.searchsorted(item_cells_sorted, query_cells, side="right")
    n = stops - starts
    result = np.zeros(len(query_cells), dtype=bool)
    for lo, hi in _query_slices(n):
        count = n[lo:hi]
        total = int(count.sum())
        if total == 0:
            continue
        q = np.repeat(np.arange(lo, hi), count)
        item = np.repeat(starts[lo:hi], count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
        hit = test(q, item)
        result[q[hit]] = True
    return result


def reference_floor(
    mesh: trimesh.Scene,
    cell_size: float = 0.1,
    agent_height: float = 1.5,
    agent_radius: float = 0.2,
    step_height: float = 0.2,
    min_region_area_m2: float = 1.0,
    max_slope_deg: float = 30.0,
    scene_name: str = "scene",
) -> NavigableGrid:
    """:func:`rendering.navigable.find_navigable_floor` (same parameters and result), the first way."""
    for name, value in [("cell_size", cell_size), ("agent_height", agent_height),
                        ("step_height", step_height)]:
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{scene_name}: {name} must be positive, got {value}")
    if not (np.isfinite(agent_radius) and agent_radius >= 0):
        raise ValueError(f"{scene_name}: agent_radius must be >= 0, got {agent_radius}")
    if step_height >= agent_height:
        raise ValueError(f"{scene_name}: step_height ({step_height}) must be below agent_height ({agent_height})")

    tris = world_triangles(mesh)
    if len(tris) == 0:
        raise SceneLoadError(f"{scene_name}: no navigable floor (the mesh has no triangles)")
    if not np.all(np.isfinite(tris)):
        raise SceneLoadError(f"{scene_name}: mesh has NaN or infinite vertex coordinates")
    s = float(cell_size)

    xz = tris[:, :, [0, 2]]
    origin = np.floor(xz.reshape(-1, 2).min(axis=0) / s) * s - s  # one empty cell of padding
    far = xz.reshape(-1, 2).max(axis=0)
    ncols, nrows = (np.floor((far - origin) / s).astype(np.int64) + 2).tolist()
    shape = (nrows, ncols)
    if nrows * ncols > MAX_GRID_CELLS:
        raise SceneLoadError(
            f"{scene_name}: scene spans {far[0] - origin[0]:.0f} x {far[1] - origin[1]:.0f} m, too large "
            f"for {s} m cells ({nrows * ncols} cells > {MAX_GRID_CELLS}); check for stray vertices "
            f"or use a larger cell_size"
        )

    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    norm = np.linalg.norm(normals, axis=1)
    keep = norm > 1e-12
    tris, xz, normals, norm = tris[keep], xz[keep], normals[keep], norm[keep]
    ny = normals[:, 1] / norm
    ys = tris[:, :, 1]
    tri_ylo, tri_yhi = ys.min(axis=1), ys.max(axis=1)

    # 2-D barycentric set-up on the XZ projection (signed area in XZ; zero for vertical triangles).
    a, b, c = xz[:, 0], xz[:, 1], xz[:, 2]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    steep = np.abs(ny) < 1e-3
    sampled = (np.abs(det) > 1e-12) & ~steep  # triangles a vertical ray can hit
    # Separating-axis overlap of triangle and cell square, per triangle: the cell centre's
    # projection on each edge normal must lie within the triangle's projected interval widened by
    # the cell's half-extent along that normal. Precomputed per triangle, so a (triangle, cell)
    # pair costs three dot products.
    edges = np.stack([b - a, c - b, a - c], axis=1)  # (F, 3, 2)
    axes = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)  # (F, 3, 2)
    proj = np.einsum("fke,fve->fkv", axes, xz)  # (F, 3 axes, 3 vertices)
    half = 0.5 * s + 1e-6 * s
    reach = half * (np.abs(axes[..., 0]) + np.abs(axes[..., 1]))
    lo_bound = proj.min(axis=2) - reach - 1e-12
    hi_bound = proj.max(axis=2) + reach + 1e-12
    ax_x, ax_z = np.ascontiguousarray(axes[..., 0]), np.ascontiguousarray(axes[..., 1])
    # A triangle whose bounding box is one cell wide (or deep) overlaps every cell of it: the
    # test is skipped for those (wall panels, small triangles).
    lo_cell = np.floor((xz.min(axis=1) - origin) / s)
    hi_cell = np.floor((xz.max(axis=1) - origin) / s)
    needs_test = np.all(hi_cell > lo_cell, axis=1)
    # Plane y = p0 + px * x + pz * z for non-vertical triangles (to bound y inside a cell).
    with np.errstate(divide="ignore", invalid="ignore"):
        px = -normals[:, 0] / normals[:, 1]
        pz = -normals[:, 2] / normals[:, 1]
        p0 = tris[:, 0, 1] - px * tris[:, 0, 0] - pz * tris[:, 0, 2]
    # Only a triangle spanning more than one cell has a y range inside one cell smaller than its own.
    clamp = ~steep & np.any(hi_cell > lo_cell, axis=1)
    corner_dx = np.array([-half, half, -half, half])
    corner_dz = np.array([-half, -half, half, half])

    sample_cell, sample_y, sample_up = [], [], []
    occ_cell, occ_lo, occ_hi = [], [], []
    for tri, rows, cols in _triangle_cell_pairs(xz, origin, s, shape):
        cx = origin[0] + (cols + 0.5) * s
        cz = origin[1] + (rows + 0.5) * s
        cell = rows * ncols + cols
        overlap = np.ones(len(tri), dtype=bool)
        test = needs_test[tri]
        if np.any(test):
            t, tx, tz = tri[test], cx[test], cz[test]
            ok = np.ones(len(t), dtype=bool)
            for k in range(3):
                centre = ax_x[t, k] * tx + ax_z[t, k] * tz
                ok &= (centre >= lo_bound[t, k]) & (centre <= hi_bound[t, k])
            overlap[test] = ok
        t_ov, c_ov = tri[overlap], cell[overlap]
        ylo, yhi = tri_ylo[t_ov], tri_yhi[t_ov]
        plane = clamp[t_ov]
        if np.any(plane):
            tp = t_ov[plane]
            ccx, ccz = cx[overlap][plane], cz[overlap][plane]
            corner_y = (p0[tp][:, None] + px[tp][:, None] * (ccx[:, None] + corner_dx)
                        + pz[tp][:, None] * (ccz[:, None] + corner_dz))
            ylo_p = np.maximum(ylo[plane], corner_y.min(axis=1))
            yhi_p = np.minimum(yhi[plane], corner_y.max(axis=1))
            ylo[plane], yhi[plane] = np.minimum(ylo_p, yhi_p), np.maximum(ylo_p, yhi_p)
        occ_cell.append(c_ov.astype(np.int32))
        occ_lo.append(ylo)
        occ_hi.append(yhi)

        # Exact surface samples at cell centres (vertical rays) for non-vertical triangles.
        fe = sampled[tri]
        t = tri[fe]
        px_, pz_ = cx[fe], cz[fe]
        d = det[t]
        ax0, az0 = a[t, 0], a[t, 1]
        w1 = ((px_ - ax0) * (c[t, 1] - az0) - (c[t, 0] - ax0) * (pz_ - az0)) / d
        w2 = ((b[t, 0] - ax0) * (pz_ - az0) - (px_ - ax0) * (b[t, 1] - az0)) / d
        w0 = 1.0 - w1 - w2
        tol = -1e-9
        inside = (w0 >= tol) & (w1 >= tol) & (w2 >= tol)
        t_in = t[inside]
        y = (w0[inside] * ys[t_in, 0] + w1[inside] * ys[t_in, 1] + w2[inside] * ys[t_in, 2])
        sample_cell.append(cell[fe][inside].astype(np.int32))
        sample_y.append(y)
        sample_up.append(ny[t_in])

    # The per-triangle set-up is not needed any more: free it before the per-cell phase.
    del tris, xz, normals, norm, edges, axes, proj, reach, lo_bound, hi_bound, ax_x, ax_z, a, b, c, det, ys
    del px, pz, p0
    occ_cell = np.concatenate(occ_cell)
    occ_lo = np.concatenate(occ_lo)
    occ_hi = np.concatenate(occ_hi)
    sample_cell = np.concatenate(sample_cell)
    sample_y = np.concatenate(sample_y)
    sample_ny = np.concatenate(sample_up)
    del sample_up

    cos_slope = np.cos(np.radians(max_slope_deg))
    is_cand = sample_ny >= cos_slope
    cand_cell, cand_h = sample_cell[is_cand], sample_y[is_cand]
    if cand_cell.size == 0:
        raise SceneLoadError(f"{scene_name}: no navigable floor (no up-facing surfaces)")

    # 1) Nothing in the body's way between step height and head height.
    order = np.argsort(occ_cell, kind="stable")
    occ_cell_s, occ_lo_s, occ_hi_s = occ_cell[order], occ_lo[order], occ_hi[order]
    del order, occ_cell, occ_lo, occ_hi
    lo_band, hi_band = cand_h + step_height, cand_h + agent_height
    blocked = _group_any(
        cand_cell,
        occ_cell_s,
        lambda q, i: (occ_lo_s[i] < hi_band[q]) & (occ_hi_s[i] > lo_band[q]),
    )
    # 2) Not inside a closed solid: the first surface straight above must face down (or be absent).
    del occ_cell_s, occ_lo_s, occ_hi_s
    order = np.lexsort((sample_y, sample_cell))
    sc_s, sy_s, sny_s = sample_cell[order], sample_y[order], sample_ny[order]
    del order
    first_above = _first_above(cand_cell, lo_band, sc_s, sy_s)
    has_above = first_above >= 0
    inside_solid = np.zeros_like(blocked)
    inside_solid[has_above] = sny_s[first_above[has_above]] > 0
    free = ~blocked & ~inside_solid

    heights = np.full(nrows * ncols, np.inf)
    np.minimum.at(heights, cand_cell[free], cand_h[free])
    heights[~np.isfinite(heights)] = np.nan
    heights = heights.reshape(shape)

    heights = _erode(heights, s, agent_radius, step_height)
    heights = keep_large_regions(heights, s, step_height, min_region_area_m2)
    return NavigableGrid(heights, (float(origin[0]), float(origin[1])), s)


def _first_above(
    query_cell: np.ndarray, query_y: np.ndarray, cells_sorted: np.ndarray, y_sorted: np.ndarray
) -> np.ndarray:
    """Index (into the (cell, y)-sorted samples) of the lowest sample above ``query_y`` in the same cell, or -1."""
    starts = np.searchsorted(cells_sorted, query_cell, side="left")
    stops = np.searchsorted(cells_sorted, query_cell, side="right")
    n = stops - starts
    out = np.full(len(query_cell), -1, dtype=np.int64)
    for lo, hi in _query_slices(n):
        count = n[lo:hi]
        total = int(count.sum())
        if total == 0:
            continue
        q = np.repeat(np.arange(lo, hi), count)
        item = np.repeat(starts[lo:hi], count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
        above = y_sorted[item] > query_y[q]
        # Samples are sorted by y inside a cell, so the first "above" per query is the lowest one.
        q_above, item_above = q[above], item[above]
        first = np.unique(q_above, return_index=True)
        out[first[0]] = item_above[first[1]]
    return out

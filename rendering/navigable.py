"""Where a camera-carrying agent could stand: a floor-height grid over the world XZ plane.

The pair sampler needs two things from a scene: uniformly random floor points and "the floor point
nearest to here" after a random-walk step. Both are cheap on a regular grid holding one floor
height per cell (NaN = not navigable), whatever produced it: the procedural generator knows its
floor exactly, and :func:`find_navigable_floor` recovers it from an arbitrary indoor mesh by
rasterising the triangles into the same grid.

World frame: +Y up (glTF convention), so the grid lies in X (columns) and Z (rows).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import trimesh
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from rendering.backend import SceneLoadError


class NavigableGrid:
    """Floor heights on a regular XZ grid; implements :class:`rendering.backend.NavigableSpace`.

    Cell ``(row, col)`` covers ``x in [x0 + col*s, x0 + (col+1)*s)`` and
    ``z in [z0 + row*s, z0 + (row+1)*s)`` where ``(x0, z0) = origin_xz`` and ``s = cell_size``;
    ``heights[row, col]`` is the floor's world Y there, NaN where nobody can stand.
    """

    def __init__(self, heights: np.ndarray, origin_xz: tuple[float, float], cell_size: float):
        heights = np.array(heights, dtype=np.float64)  # own copy: the grid is immutable
        if heights.ndim != 2 or heights.size == 0:
            raise ValueError(f"navigable heights must be a non-empty 2-D grid, got shape {heights.shape}")
        if not (np.isfinite(cell_size) and cell_size > 0):
            raise ValueError(f"cell_size must be a positive number, got {cell_size}")
        origin = np.asarray(origin_xz, dtype=np.float64)
        if origin.shape != (2,) or not np.all(np.isfinite(origin)):
            raise ValueError(f"origin_xz must be two finite numbers, got {origin_xz}")
        if np.any(np.isinf(heights)):
            raise ValueError("navigable heights must be finite or NaN (not navigable)")
        self.heights = heights
        self.heights.setflags(write=False)
        self.origin_xz = origin
        self.cell_size = float(cell_size)
        rows, cols = np.nonzero(np.isfinite(heights))
        self._rows = rows
        self._cols = cols
        self._cell_heights = heights[rows, cols]
        self._x0, self._z0 = (float(v) for v in origin)

    @classmethod
    def from_heights(
        cls, heights: np.ndarray, origin_xz: tuple[float, float], cell_size: float
    ) -> "NavigableGrid":
        """A grid from an explicit height array (NaN = not navigable)."""
        return cls(heights, origin_xz, cell_size)

    # --- what it holds -------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return self.heights.shape  # type: ignore[return-value]

    @property
    def mask(self) -> np.ndarray:
        """Boolean (rows, cols): True where navigable."""
        return np.isfinite(self.heights)

    @property
    def num_cells(self) -> int:
        return int(self._rows.size)

    @property
    def area_m2(self) -> float:
        return self.num_cells * self.cell_size**2

    @property
    def is_empty(self) -> bool:
        return self.num_cells == 0

    def cell_centres(self) -> np.ndarray:
        """(N, 3) world points at the centres of the navigable cells, on the floor."""
        s = self.cell_size
        x = self.origin_xz[0] + (self._cols + 0.5) * s
        z = self.origin_xz[1] + (self._rows + 0.5) * s
        return np.stack([x, self._cell_heights, z], axis=1)

    @cached_property
    def _tree(self) -> cKDTree:
        centres = self.cell_centres()
        return cKDTree(centres[:, [0, 2]])

    def _require_points(self) -> None:
        if self.is_empty:
            raise SceneLoadError("navigable grid is empty: no floor to sample or snap to")

    # --- queries -------------------------------------------------------------------------------

    def cell_index(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, inside) of the cells under ``points`` (..., 3); ``inside`` = within the grid."""
        pts = np.asarray(points, dtype=np.float64)
        s = self.cell_size
        cols = np.floor((pts[..., 0] - self.origin_xz[0]) / s).astype(np.int64)
        rows = np.floor((pts[..., 2] - self.origin_xz[1]) / s).astype(np.int64)
        inside = (rows >= 0) & (rows < self.shape[0]) & (cols >= 0) & (cols < self.shape[1])
        return np.where(inside, rows, 0), np.where(inside, cols, 0), inside

    def height_at(self, points: np.ndarray) -> np.ndarray:
        """Floor height under each point (..., 3) horizontally; NaN where not navigable."""
        rows, cols, inside = self.cell_index(points)
        return np.where(inside, self.heights[rows, cols], np.nan)

    def is_navigable(self, points: np.ndarray) -> np.ndarray:
        """True where the point's horizontal position lies on a navigable cell (height ignored)."""
        return np.isfinite(self.height_at(points))

    def sample_points(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 3) points uniform over the navigable area (cells have equal area)."""
        self._require_points()
        pick = rng.integers(0, self.num_cells, size=n)
        jitter = rng.random((n, 2))
        s = self.cell_size
        x = self.origin_xz[0] + (self._cols[pick] + jitter[:, 0]) * s
        z = self.origin_xz[1] + (self._rows[pick] + jitter[:, 1]) * s
        return np.stack([x, self._cell_heights[pick], z], axis=1)

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random navigable floor point (3,)."""
        return self.sample_points(rng, 1)[0]

    def snap_point(self, point: np.ndarray) -> np.ndarray:
        """Nearest navigable floor point horizontally, for one point (3,) or many (N, 3).

        A point over a navigable cell keeps its X/Z and takes that cell's floor height; any other
        point moves into the navigable cell whose centre is nearest (to the closest spot inside it).
        """
        self._require_points()
        pts = np.asarray(point, dtype=np.float64)
        if pts.shape == (3,):
            snapped = self._snap_one(pts)
            if snapped is not None:
                return snapped
        if pts.shape[-1] != 3 or pts.ndim not in (1, 2):
            raise ValueError(f"snap_point expects (3,) or (N, 3) points, got shape {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("snap_point: point contains NaN or infinite values")
        flat = pts.reshape(-1, 3)
        out = flat.copy()
        h = self.height_at(flat)
        on = np.isfinite(h)
        out[on, 1] = h[on]
        off = ~on
        if np.any(off):
            _, idx = self._tree.query(flat[off][:, [0, 2]])
            s = self.cell_size
            inset = 1e-6 * s  # stay strictly inside the cell despite rounding
            lo_x = self.origin_xz[0] + self._cols[idx] * s
            lo_z = self.origin_xz[1] + self._rows[idx] * s
            out_off = flat[off].copy()
            out_off[:, 0] = np.clip(out_off[:, 0], lo_x + inset, lo_x + s - inset)
            out_off[:, 2] = np.clip(out_off[:, 2], lo_z + inset, lo_z + s - inset)
            out_off[:, 1] = self._cell_heights[idx]
            out[off] = out_off
        return out.reshape(pts.shape)

    def _snap_one(self, point: np.ndarray) -> np.ndarray | None:
        """:meth:`snap_point` of one finite point (3,), the same arithmetic on Python floats; None
        for a non-finite point (the array path names it). The random walk snaps one point per step,
        and numpy's per-call overhead on 1-element arrays was most of its cost (~70 us a step)."""
        x, y, z = point.tolist()
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
            return None
        s = self.cell_size
        col = math.floor((x - self._x0) / s)
        row = math.floor((z - self._z0) / s)
        rows, cols = self.heights.shape
        if 0 <= row < rows and 0 <= col < cols:
            height = self.heights.item(row, col)
            if math.isfinite(height):
                return np.array([x, height, z])
        _, idx = self._tree.query([x, z])
        inset = 1e-6 * s
        lo_x = self._x0 + self._cols.item(idx) * s
        lo_z = self._z0 + self._rows.item(idx) * s
        x = min(max(x, lo_x + inset), lo_x + s - inset)
        z = min(max(z, lo_z + inset), lo_z + s - inset)
        return np.array([x, self._cell_heights.item(idx), z])

    # --- persistence ---------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the grid as an ``.npz`` (heights, origin_xz, cell_size)."""
        np.savez(path, heights=self.heights, origin_xz=self.origin_xz, cell_size=np.float64(self.cell_size))

    @classmethod
    def load(cls, path) -> "NavigableGrid":
        """Read a grid written by :meth:`save`; ``ValueError`` naming the file if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["heights"], tuple(data["origin_xz"].tolist()), float(data["cell_size"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a navigable grid file: {exc}") from exc

    def __repr__(self) -> str:
        return (
            f"NavigableGrid(shape={self.shape}, cell_size={self.cell_size}, "
            f"origin_xz={self.origin_xz.tolist()}, area_m2={self.area_m2:.2f})"
        )


# ------------------------------------------------------------------------------------------------
# Floor finding for arbitrary meshes
# ------------------------------------------------------------------------------------------------

_MAX_PAIRS_PER_BAND = 250_000  # (triangle, cell) pairs handled at once: bounds the working memory
_BAND_CELLS_16 = 1 << 16
MAX_GRID_CELLS = 25_000_000  # 500 x 500 m at 0.1 m: beyond any building, so likely stray vertices


def world_triangles(mesh: trimesh.Scene) -> np.ndarray:
    """All triangles of ``mesh`` in world coordinates, (F, 3, 3), with node transforms applied."""
    tris = []
    for node in mesh.graph.nodes_geometry:
        transform, geom_name = mesh.graph[node]
        geom = mesh.geometry.get(geom_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        verts = trimesh.transform_points(np.asarray(geom.vertices, dtype=np.float64), transform)
        faces = np.asarray(geom.faces, dtype=np.int64)
        if np.linalg.det(np.asarray(transform)[:3, :3]) < 0:  # a mirror flips the winding
            faces = faces[:, ::-1]
        tris.append(verts[faces])
    if not tris:
        return np.zeros((0, 3, 3))
    return np.concatenate(tris, axis=0)


def _query_slices(n: np.ndarray, budget: int = _MAX_PAIRS_PER_BAND, max_length: int | None = None):
    """Consecutive ranges of ``n`` whose sums stay within ``budget`` (a single item may exceed it),
    each at most ``max_length`` long."""
    ends = np.cumsum(n)
    start = 0
    while start < len(n):
        base = ends[start - 1] if start > 0 else 0
        stop = max(int(np.searchsorted(ends, base + budget, side="right")), start + 1)
        if max_length is not None:
            stop = min(stop, start + max_length)
        yield start, stop
        start = stop


def _segment_items(starts: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, item) for ``count[i]`` consecutive items from ``starts[i]`` for every i, in order."""
    owner = np.repeat(np.arange(len(count)), count)
    offsets = np.cumsum(count) - count
    item = np.arange(int(count.sum())) - np.repeat(offsets - starts, count)
    return owner, item


def _cell_ranges(query_cells: np.ndarray, item_cells_sorted: np.ndarray, ncells: int):
    """(start, count) of the items in each query's cell, for items sorted by cell (< ``ncells``)."""
    count = np.bincount(item_cells_sorted, minlength=ncells)
    start = np.cumsum(count) - count
    return start[query_cells], count[query_cells]


def _group_any(query_cells: np.ndarray, item_cells_sorted: np.ndarray, ncells: int, test) -> np.ndarray:
    """For each query, whether ``test(query_idx, item_idx)`` holds for any item in the same cell
    (queries handled in slices, so memory stays bounded whatever the item count per cell)."""
    starts, n = _cell_ranges(query_cells, item_cells_sorted, ncells)
    result = np.zeros(len(query_cells), dtype=bool)
    for lo, hi in _query_slices(n):
        q, item = _segment_items(starts[lo:hi], n[lo:hi])
        q += lo
        hit = test(q, item)
        result[q[hit]] = True
    return result


def _reduce_short_axis(values: np.ndarray, axis: int, combine: np.ufunc) -> np.ndarray:
    """``combine`` (np.minimum / np.maximum) over a short axis (three vertices), elementwise: a
    reduction over a short axis is slow."""
    parts = np.moveaxis(values, axis, 0)
    out = parts[0].copy()
    for part in parts[1:]:
        combine(out, part, out=out)
    return out


def _least(values: np.ndarray, axis: int) -> np.ndarray:
    return _reduce_short_axis(values, axis, np.minimum)


def _most(values: np.ndarray, axis: int) -> np.ndarray:
    return _reduce_short_axis(values, axis, np.maximum)


class _Triangles:
    """The per-triangle set-up of the floor search: which cells a triangle may touch, the overlap
    test of triangle and cell square, its height range inside a cell, and its vertical-ray sample."""

    def __init__(self, tris: np.ndarray, origin: np.ndarray, s: float, shape: tuple[int, int]):
        xz = tris[:, :, [0, 2]]
        normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
        norm = np.linalg.norm(normals, axis=1)
        keep = norm > 1e-12
        tris, xz, normals, norm = tris[keep], xz[keep], normals[keep], norm[keep]
        self.ny = normals[:, 1] / norm
        self.ys = np.ascontiguousarray(tris[:, :, 1])
        self.ylo, self.yhi = _least(self.ys, axis=1), _most(self.ys, axis=1)

        # Grid cells of each triangle's XZ bounding box, clipped to the grid.
        lo_cell = np.floor((_least(xz, axis=1) - origin) / s)
        hi_cell = np.floor((_most(xz, axis=1) - origin) / s)
        lo = np.clip(lo_cell.astype(np.int64), 0, [shape[1] - 1, shape[0] - 1])
        hi = np.clip(hi_cell.astype(np.int64), 0, [shape[1] - 1, shape[0] - 1])
        self.col0, self.row0, self.row1 = lo[:, 0].copy(), lo[:, 1].copy(), hi[:, 1].copy()
        self.width = hi[:, 0] - lo[:, 0] + 1

        # 2-D barycentric set-up on the XZ projection (signed area in XZ; zero for vertical triangles).
        a, b, c = xz[:, 0], xz[:, 1], xz[:, 2]
        self.ax, self.az = a[:, 0].copy(), a[:, 1].copy()
        self.e1x, self.e1z = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]  # edges a->b and a->c
        self.e2x, self.e2z = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
        self.det = self.e1x * self.e2z - self.e2x * self.e1z
        steep = np.abs(self.ny) < 1e-3
        self.sampled = (np.abs(self.det) > 1e-12) & ~steep  # triangles a vertical ray can hit
        # Separating-axis overlap of triangle and cell square, per triangle: the cell centre's
        # projection on each edge normal must lie within the triangle's projected interval widened
        # by the cell's half-extent along that normal. Precomputed per triangle, so a (triangle,
        # cell) pair costs three dot products.
        edges = np.stack([b - a, c - b, a - c], axis=1)  # (F, 3, 2)
        axes = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)  # (F, 3, 2)
        proj = np.einsum("fke,fve->fkv", axes, xz)  # (F, 3 axes, 3 vertices)
        self.half = 0.5 * s + 1e-6 * s
        reach = self.half * (np.abs(axes[..., 0]) + np.abs(axes[..., 1]))
        lo_bound = _least(proj, axis=2) - reach - 1e-12
        hi_bound = _most(proj, axis=2) + reach + 1e-12
        # A triangle whose bounding box is one cell wide (or deep) overlaps every cell of it: the
        # test is skipped for those (wall panels, small triangles). An axis-aligned edge's test
        # holds for every cell of the bounding box (a centre lies at most half a cell beyond the
        # triangle's extent along the axis, the test allows half a cell plus a millionth), so only
        # slanted edges are tested: they come first, and ``tests`` counts them.
        slanted = (axes[..., 0] != 0) & (axes[..., 1] != 0)
        self.tests = np.where(np.all(hi_cell > lo_cell, axis=1), slanted.sum(axis=1), 0)
        first = np.argsort(~slanted, axis=1, kind="stable")

        def edge_rows(values: np.ndarray) -> np.ndarray:  # (3, F): one contiguous row per edge
            return np.ascontiguousarray(np.take_along_axis(values, first, axis=1).T)

        self.lo_bound, self.hi_bound = edge_rows(lo_bound), edge_rows(hi_bound)
        self.axis_x, self.axis_z = edge_rows(axes[..., 0]), edge_rows(axes[..., 1])
        # Plane y = p0 + px * x + pz * z for non-vertical triangles (to bound y inside a cell).
        with np.errstate(divide="ignore", invalid="ignore"):
            self.px = -normals[:, 0] / normals[:, 1]
            self.pz = -normals[:, 2] / normals[:, 1]
            self.p0 = tris[:, 0, 1] - self.px * tris[:, 0, 0] - self.pz * tris[:, 0, 2]
        # Only a sloped triangle spanning more than one cell has a y range inside one cell smaller
        # than its own (a level one has a single height).
        self.clamp = ~steep & np.any(hi_cell > lo_cell, axis=1) & (self.ylo < self.yhi)

    def __len__(self) -> int:
        return len(self.ny)

    def pairs_per_row(self, nrows: int) -> np.ndarray:
        """(triangle, cell) pairs of each grid row."""
        change = np.bincount(self.row0, weights=self.width, minlength=nrows + 1)
        change -= np.bincount(self.row1 + 1, weights=self.width, minlength=nrows + 1)
        return np.cumsum(change)[:nrows].round().astype(np.int64)

    def band_pairs(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(triangle, row, col) of every cell in rows [r0, r1) of each triangle's bounding box, in
        triangle order (row-major inside one triangle)."""
        sel = np.flatnonzero((self.row0 < r1) & (self.row1 >= r0))
        top = np.maximum(self.row0[sel], r0)
        width = self.width[sel]
        count = width * (np.minimum(self.row1[sel], r1 - 1) - top + 1)
        owner, local = _segment_items(np.zeros(len(sel), dtype=np.int64), count)
        step = width[owner]
        rows = top[owner] + local // step
        cols = self.col0[sel][owner] + local % step
        return sel[owner], rows, cols


def _band_surfaces(t: _Triangles, tri: np.ndarray, cx: np.ndarray, cz: np.ndarray):
    """For (triangle, cell centre) pairs: ``occupied`` (pair indices, y low, y high) of the pairs
    whose triangle overlaps the cell, with the triangle's height range over the cell, and
    ``samples`` (pair indices, y, up component of the normal) where the triangle lies straight
    below or above the cell centre."""
    overlap = np.ones(len(tri), dtype=bool)
    test = np.flatnonzero(t.tests[tri])  # pairs still overlapping, with edge k left to test
    for k in range(3):
        if test.size == 0:
            break
        tt = tri[test]
        centre = t.axis_x[k][tt] * cx[test] + t.axis_z[k][tt] * cz[test]
        ok = (centre >= t.lo_bound[k][tt]) & (centre <= t.hi_bound[k][tt])
        overlap[test[~ok]] = False
        test = test[ok & (t.tests[tt] > k + 1)]
    occ = np.flatnonzero(overlap)
    t_ov = tri[occ]
    ylo, yhi = t.ylo[t_ov], t.yhi[t_ov]
    plane = np.flatnonzero(t.clamp[t_ov])
    if plane.size:
        tp = t_ov[plane]
        ccx, ccz = cx[occ[plane]], cz[occ[plane]]
        p0, px, pz = t.p0[tp], t.px[tp], t.pz[tp]
        h = t.half
        corner_y = np.stack([p0 + px * (ccx + dx) + pz * (ccz + dz) for dx, dz in ((-h, -h), (h, -h), (-h, h), (h, h))])
        ylo_p = np.maximum(ylo[plane], _least(corner_y, axis=0))
        yhi_p = np.minimum(yhi[plane], _most(corner_y, axis=0))
        ylo[plane], yhi[plane] = np.minimum(ylo_p, yhi_p), np.maximum(ylo_p, yhi_p)

    # Exact surface samples at cell centres (vertical rays) for non-vertical triangles.
    fe = np.flatnonzero(t.sampled[tri])
    ts = tri[fe]
    px_, pz_ = cx[fe], cz[fe]
    d = t.det[ts]
    dx, dz = px_ - t.ax[ts], pz_ - t.az[ts]
    w1 = (dx * t.e2z[ts] - t.e2x[ts] * dz) / d
    w2 = (t.e1x[ts] * dz - dx * t.e1z[ts]) / d
    w0 = 1.0 - w1 - w2
    tol = -1e-9
    inside = np.flatnonzero((w0 >= tol) & (w1 >= tol) & (w2 >= tol))
    t_in = ts[inside]
    ys = t.ys[t_in]
    y = w0[inside] * ys[:, 0] + w1[inside] * ys[:, 1] + w2[inside] * ys[:, 2]
    return (occ, ylo, yhi), (fe[inside], y, t.ny[t_in])


def find_navigable_floor(
    mesh: trimesh.Scene,
    cell_size: float = 0.1,
    agent_height: float = 1.5,
    agent_radius: float = 0.2,
    step_height: float = 0.2,
    min_region_area_m2: float = 1.0,
    max_slope_deg: float = 30.0,
    scene_name: str = "scene",
) -> NavigableGrid:
    """Floor cells of an indoor mesh (+Y up) where an agent of the given size can stand.

    A cell is a floor candidate where an up-facing surface (slope <= ``max_slope_deg``) covers its
    centre. The candidate is free when no geometry overlapping the cell lies between
    ``floor + step_height`` and ``floor + agent_height`` and the first surface above it faces down
    (an up-facing one means the point is inside a closed solid such as a thick wall). The lowest
    free candidate of each cell is kept; cells next to obstacles or to height jumps of at least
    ``step_height`` are eroded by ``agent_radius``; finally only connected regions (4-neighbours
    whose heights differ by less than ``step_height``) of at least ``min_region_area_m2`` remain,
    which drops table and shelf tops.

    The grid is processed in bands of rows holding at most ``_MAX_PAIRS_PER_BAND`` (triangle, cell)
    pairs (at least one row), each band with every triangle that reaches it: the working memory is
    that of one band, and the time is linear in the pairs (for a fixed cell size: in the triangles
    and the area they cover).
    """
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

    flat_xz = tris[:, :, [0, 2]].reshape(-1, 2)
    origin = np.floor(flat_xz.min(axis=0) / s) * s - s  # one empty cell of padding
    far = flat_xz.max(axis=0)
    del flat_xz
    ncols, nrows = (np.floor((far - origin) / s).astype(np.int64) + 2).tolist()
    shape = (nrows, ncols)
    if nrows * ncols > MAX_GRID_CELLS:
        raise SceneLoadError(
            f"{scene_name}: scene spans {far[0] - origin[0]:.0f} x {far[1] - origin[1]:.0f} m, too large "
            f"for {s} m cells ({nrows * ncols} cells > {MAX_GRID_CELLS}); check for stray vertices "
            f"or use a larger cell_size"
        )
    triangles = _Triangles(tris, origin, s, shape)
    del tris

    cos_slope = np.cos(np.radians(max_slope_deg))
    heights = np.full(nrows * ncols, np.inf)
    any_candidate = False
    # Bands of at most 2^16 cells where the grid is that narrow, so that cell numbers inside a band
    # are 16-bit and numpy sorts them by radix (linear time).
    band_rows = max(1, _BAND_CELLS_16 // ncols)
    for r0, r1 in _query_slices(triangles.pairs_per_row(nrows), _MAX_PAIRS_PER_BAND, band_rows):
        tri, rows, cols = triangles.band_pairs(r0, r1)
        if tri.size == 0:
            continue
        cx = origin[0] + (cols + 0.5) * s
        cz = origin[1] + (rows + 0.5) * s
        cell_type = np.uint16 if (r1 - r0) * ncols <= _BAND_CELLS_16 else np.int32
        cell = ((rows - r0) * ncols + cols).astype(cell_type)  # inside the band
        del rows, cols
        (occ, occ_lo, occ_hi), (smp, sample_y, sample_ny) = _band_surfaces(triangles, tri, cx, cz)
        del tri, cx, cz
        occ_cell, sample_cell = cell[occ], cell[smp]
        del cell, occ, smp
        is_cand = sample_ny >= cos_slope
        cand_cell, cand_h = sample_cell[is_cand], sample_y[is_cand]
        if cand_cell.size == 0:
            continue
        any_candidate = True
        free = _free_candidates(cand_cell, cand_h, occ_cell, occ_lo, occ_hi, sample_cell, sample_y, sample_ny,
                                (r1 - r0) * ncols, step_height, agent_height)
        np.minimum.at(heights, cand_cell[free].astype(np.int64) + r0 * ncols, cand_h[free])
    if not any_candidate:
        raise SceneLoadError(f"{scene_name}: no navigable floor (no up-facing surfaces)")
    heights[~np.isfinite(heights)] = np.nan
    heights = heights.reshape(shape)

    heights = _erode(heights, s, agent_radius, step_height)
    heights = keep_large_regions(heights, s, step_height, min_region_area_m2)
    grid = NavigableGrid(heights, (float(origin[0]), float(origin[1])), s)
    if grid.is_empty:
        raise SceneLoadError(
            f"{scene_name}: no navigable floor (no connected floor region of at least "
            f"{min_region_area_m2} m^2 with {agent_height} m head clearance and "
            f"{agent_radius} m clearance from obstacles)"
        )
    return grid


def _free_candidates(cand_cell, cand_h, occ_cell, occ_lo, occ_hi, sample_cell, sample_y, sample_ny, ncells: int,
                     step_height: float, agent_height: float) -> np.ndarray:
    """Which floor candidates of one band are free: (1) nothing in the body's way between step
    height and head height, and (2) not inside a closed solid (the first surface straight above
    the step faces down, or there is none)."""
    order = np.argsort(occ_cell, kind="stable")
    occ_cell_s, occ_lo_s, occ_hi_s = occ_cell[order], occ_lo[order], occ_hi[order]
    del order
    lo_band, hi_band = cand_h + step_height, cand_h + agent_height
    blocked = _group_any(
        cand_cell,
        occ_cell_s,
        ncells,
        lambda q, i: (occ_lo_s[i] < hi_band[q]) & (occ_hi_s[i] > lo_band[q]),
    )
    del occ_cell_s, occ_lo_s, occ_hi_s
    by_y = np.argsort(sample_y, kind="stable")  # then stably by cell: sorted by (cell, y), ties in order
    order = by_y[np.argsort(sample_cell[by_y], kind="stable")]
    del by_y
    sc_s, sy_s, sny_s = sample_cell[order], sample_y[order], sample_ny[order]
    del order
    first_above = _first_above(cand_cell, lo_band, sc_s, sy_s, ncells)
    has_above = first_above >= 0
    inside_solid = np.zeros_like(blocked)
    inside_solid[has_above] = sny_s[first_above[has_above]] > 0
    return ~blocked & ~inside_solid


def _first_above(
    query_cell: np.ndarray, query_y: np.ndarray, cells_sorted: np.ndarray, y_sorted: np.ndarray, ncells: int
) -> np.ndarray:
    """Index (into the (cell, y)-sorted samples) of the lowest sample above ``query_y`` in the same cell, or -1."""
    starts, n = _cell_ranges(query_cell, cells_sorted, ncells)
    out = np.full(len(query_cell), -1, dtype=np.int64)
    for lo, hi in _query_slices(n):
        q, item = _segment_items(starts[lo:hi], n[lo:hi])
        q += lo
        above = y_sorted[item] > query_y[q]
        # Samples are sorted by y inside a cell, so the first "above" per query is the lowest one.
        q_above, item_above = q[above], item[above]
        first = np.flatnonzero(np.diff(q_above, prepend=-1))  # q is ascending: each query's first
        out[q_above[first]] = item_above[first]
    return out


def _height_jumps(heights: np.ndarray, step_height: float) -> np.ndarray:
    """Cells with a navigable 4-neighbour at a height difference of at least ``step_height``."""
    jump = np.zeros(heights.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        dv = np.abs(heights[1:, :] - heights[:-1, :]) >= step_height
        dh = np.abs(heights[:, 1:] - heights[:, :-1]) >= step_height
    jump[1:, :] |= dv
    jump[:-1, :] |= dv
    jump[:, 1:] |= dh
    jump[:, :-1] |= dh
    return jump


def _erode(heights: np.ndarray, s: float, agent_radius: float, step_height: float) -> np.ndarray:
    """Drop cells closer than ``agent_radius`` to an obstacle cell or a height jump.

    A kept cell's centre is at least ``agent_radius + s`` from the centre of any blocked cell, so a
    kept point is at least ``agent_radius`` from any axis-aligned obstacle inside a blocked cell.
    """
    ok = np.isfinite(heights) & ~_height_jumps(heights, step_height)
    if agent_radius > 0:
        padded = np.pad(ok, 1, constant_values=False)
        dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] * s
        ok &= dist >= agent_radius + s - 1e-9
    out = heights.copy()
    out[~ok] = np.nan
    return out


def keep_large_regions(
    heights: np.ndarray, s: float, step_height: float, min_area_m2: float
) -> np.ndarray:
    """Keep connected regions (4-neighbours within ``step_height``) of at least ``min_area_m2``."""
    nrows, ncols = heights.shape
    ok = np.isfinite(heights)
    idx = np.arange(nrows * ncols).reshape(nrows, ncols)
    src, dst = [], []
    with np.errstate(invalid="ignore"):
        v = ok[1:, :] & ok[:-1, :] & (np.abs(heights[1:, :] - heights[:-1, :]) < step_height)
        h = ok[:, 1:] & ok[:, :-1] & (np.abs(heights[:, 1:] - heights[:, :-1]) < step_height)
    src += [idx[1:, :][v], idx[:, 1:][h]]
    dst += [idx[:-1, :][v], idx[:, :-1][h]]
    src_a, dst_a = np.concatenate(src), np.concatenate(dst)
    n = nrows * ncols
    graph = sparse.coo_matrix((np.ones(len(src_a), dtype=np.int8), (src_a, dst_a)), shape=(n, n))
    _, labels = csgraph.connected_components(graph, directed=False)
    labels = labels.reshape(nrows, ncols)
    counts = np.bincount(labels[ok], minlength=labels.max() + 1)
    big = counts * s * s >= min_area_m2 - 1e-9
    keep = ok & big[labels]
    out = heights.copy()
    out[~keep] = np.nan
    return out

"""Checks that a mesh file is what the scene spec says: bytes, units and up axis.

A wrong unit or up axis does not make a file unreadable, it makes it *mis-sampled*: a millimetre
room is a 3 km hall, and a Z-up room read as Y-up has its "floor" on a wall. Both are refused here
with the option that fixes them, before any floor search or rendering.

Units: ``scale = None`` means metres, and a scene whose up extent is taller than any building
(or whose footprint is wider than a city) is refused, naming the unit its extent suggests.

Up axis (after the spec's rotation, world +Y is up): for each world axis, the *level area* is the
area of triangles facing along that axis (within 30 degrees, the floor search's slope limit)
whose centre lies in a band at either end of the scene along it (0.3 m or 10% of the extent),
counting the larger of the two facings so that a two-faced wall counts once.
Indoors, the floor (and ceiling) at the ends of the up axis cover the whole footprint, while at
the ends of a horizontal axis there is only one outer wall. When another axis has more than twice
the level area of +Y, the scene is refused naming the file axis that looks up. Which end of an
axis is the floor: furniture, seats and counters stand on it, so the level surfaces between the
ends lie mostly in the lower part (centre below 0.45 of the extent); failing that, the fuller
end. A scene whose in-between level surfaces sit above 0.6 of its height (or whose top holds
three times the level area of its bottom) is refused as upside down. A single bare box room is
undecidable (its walls look as level as its floor) and passes; a correctly oriented corridor is
refused only if its side walls have more than twice its floor's area (walls over four times as
high as the corridor is wide).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rendering.backend import SceneLoadError

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
MAX_UP_EXTENT_M = 200.0  # taller than this in "metres" is no indoor scene (nor most buildings)
MAX_EXTENT_M = 3000.0
UNITS = ((0.001, "millimetres"), (0.01, "centimetres"))
LEVEL_COS = float(np.cos(np.radians(30.0)))
LEVEL_BAND_M = 0.3
LEVEL_BAND_FRACTION = 0.1
WRONG_AXIS_RATIO = 2.0
UPSIDE_DOWN_RATIO = 3.0
INNER_CENTRE_MARGIN = 0.05  # the level area between the ends decides the floor end beyond 0.45 / 0.55
UPSIDE_DOWN_CENTRE = 0.4  # ... and calls a scene upside down when it lies above 0.6 of the up extent
MIN_LEVEL_AREA_M2 = 1.0


def check_file_bytes(path: Path) -> None:
    """Refuse empty files and Git LFS pointers (a clone without ``git lfs pull``) by name."""
    size = path.stat().st_size
    if size == 0:
        raise SceneLoadError(f"{path}: the file is empty (0 bytes); re-download or re-export it")
    with path.open("rb") as f:
        head = f.read(len(LFS_POINTER_PREFIX))
    if head == LFS_POINTER_PREFIX:
        raise SceneLoadError(
            f"{path}: this is a Git LFS pointer ({size} bytes of text), not the mesh; "
            "fetch the real file with `git lfs pull` in its repository"
        )


def extent_str(extent: np.ndarray, digits: int = 1) -> str:
    return " x ".join(f"{v:.{digits}f}" for v in extent)


def resolve_scale(extent_units: np.ndarray, scale: float | str | None, name: str) -> tuple[float, str]:
    """(metres per unit, how it was decided) for a scene whose world extent (X, Y up, Z) is
    ``extent_units`` file units; raises when the extent says the file is not in metres."""
    if scale is not None and scale != "auto":
        return float(scale), "given"
    up, widest = float(extent_units[1]), float(np.max(extent_units))
    plausible = up <= MAX_UP_EXTENT_M and widest <= MAX_EXTENT_M
    if plausible:
        return 1.0, "metres" if scale is None else "auto: metres"
    for factor, unit in UNITS:
        if 1.0 <= up * factor <= MAX_UP_EXTENT_M and widest * factor <= MAX_EXTENT_M:
            if scale == "auto":
                return factor, f"auto: {unit}"
            raise SceneLoadError(
                f"{name}: scene spans {extent_str(extent_units, 0)} units (x, up, z), which reads as {unit} "
                f"({extent_str(extent_units * factor)} m); set scale = {factor} (metres per unit) for this "
                "scene, or scale = \"auto\""
            )
    raise SceneLoadError(
        f"{name}: scene spans {extent_str(extent_units, 0)} units (x, up, z): too large for metres and "
        "no common unit fits; set scale (metres per unit) for this scene, or check for stray vertices"
    )


def level_evidence(tris: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level surfaces of world triangles (F, 3, 3) per axis (see the module doc):
    (3, 2) area in m^2 at the low and high end, (3,) area between the ends and (3,) where that
    area's centre lies as a fraction of the extent (0 = low end)."""
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    double_area = np.linalg.norm(normals, axis=1)
    keep = double_area > 0
    normals, area = normals[keep] / double_area[keep, None], 0.5 * double_area[keep]
    centres = tris[keep].mean(axis=1)
    lo, hi = tris.reshape(-1, 3).min(axis=0), tris.reshape(-1, 3).max(axis=0)
    ends, inner_area, inner_centre = np.zeros((3, 2)), np.zeros(3), np.full(3, 0.5)
    for axis in range(3):
        band = max(LEVEL_BAND_M, LEVEL_BAND_FRACTION * (hi[axis] - lo[axis]))
        up, down = normals[:, axis] >= LEVEL_COS, normals[:, axis] <= -LEVEL_COS
        level = up | down
        low, high = centres[:, axis] <= lo[axis] + band, centres[:, axis] >= hi[axis] - band
        # The larger of the two facings: a closed (two-faced) wall or slab counts once, like a
        # one-sided floor, whichever way the file winds its triangles.
        ends[axis] = (max(area[up & low].sum(), area[down & low].sum()),
                      max(area[up & high].sum(), area[down & high].sum()))
        inner = level & ~low & ~high
        inner_area[axis] = area[inner].sum()
        if inner_area[axis] > 0:
            mean = (centres[inner, axis] * area[inner]).sum() / inner_area[axis]
            inner_centre[axis] = (mean - lo[axis]) / max(hi[axis] - lo[axis], 1e-12)
    return ends, inner_area, inner_centre


def level_areas(tris: np.ndarray) -> np.ndarray:
    """(3 axes, 2 ends) level area in m^2 at the ends of each world axis."""
    return level_evidence(tris)[0]


def _floor_end(ends: np.ndarray, inner_area: float, inner_centre: float) -> int:
    """+1 when the floor is at the low end of an axis, -1 at the high end, 0 when undecided.

    Furniture, counters and seats stand on the floor: the level surfaces between the ends sit
    mostly in the lower part of a storey. Failing that, the fuller end (a floor without ceiling)."""
    if inner_area >= MIN_LEVEL_AREA_M2 and abs(inner_centre - 0.5) > INNER_CENTRE_MARGIN:
        return 1 if inner_centre < 0.5 else -1
    if max(ends) > 1.2 * min(ends):
        return 1 if ends[0] > ends[1] else -1
    return 0


def check_orientation(tris: np.ndarray, to_world: np.ndarray, declared: str, name: str) -> np.ndarray:
    """Refuse a scene whose geometry says world +Y is not up; returns the level areas at the ends.

    ``to_world`` is the 3x3 rotation the spec's ``up_axis`` applied (file -> world), used to name
    the file axis that looks up.
    """
    ends, inner_area, inner_centre = level_evidence(tris)
    best = ends.max(axis=1)
    other = int(np.argmax(np.where(np.arange(3) == 1, -1.0, best)))
    if best[other] >= MIN_LEVEL_AREA_M2 and best[other] > WRONG_AXIS_RATIO * best[1]:
        sign = _floor_end(ends[other], inner_area[other], inner_centre[other])
        axis = file_axis_name(to_world.T @ ((sign or 1) * np.eye(3)[other]))
        hint = f'up = "{axis}"' if sign else f'up = "{axis.lstrip("-")}" or "-{axis.lstrip("-")}"'
        raise SceneLoadError(
            f"{name}: the scene does not look {declared!r}-up: level surfaces cover {best[other]:.1f} m^2 at the "
            f"ends of the file's {axis.lstrip('-')!r} axis but {best[1]:.1f} m^2 at the ends of the declared "
            f"up axis; set {hint} for this scene"
        )
    if _floor_end(ends[1], inner_area[1], inner_centre[1]) < 0 and (
        inner_area[1] >= MIN_LEVEL_AREA_M2 and inner_centre[1] > 1.0 - UPSIDE_DOWN_CENTRE
        or ends[1, 1] > UPSIDE_DOWN_RATIO * ends[1, 0]
    ):
        suggested = file_axis_name(to_world.T @ np.array([0.0, -1.0, 0.0]))
        raise SceneLoadError(
            f"{name}: the scene looks upside down with up = {declared!r} (its furniture and floor-like surfaces "
            f"are at the top); set up = \"{suggested}\" for this scene"
        )
    return ends


def file_axis_name(direction: np.ndarray) -> str:
    """'x', '-z', ... for a unit file-frame direction along one axis."""
    axis = int(np.argmax(np.abs(direction)))
    return ("-" if direction[axis] < 0 else "") + "xyz"[axis]

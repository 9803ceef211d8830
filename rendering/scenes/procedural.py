"""Procedural indoor scenes, deterministic from a seed: rooms, doors, furniture, textured surfaces.

A scene is a set of rectangular rooms on a grid (each room one grid cell, the set grown at random
so it stays connected), walls with door openings between neighbouring rooms, floors and ceilings,
furniture-like objects (boxes, tables with items on them, shelves against walls, cylinders) and
pictures on the walls. Surfaces are textured with photographs and procedural patterns
(:mod:`rendering.scenes.textures`) through UVs in metres, so texture scale is physical.

Because the generator knows the layout, it knows the navigable floor exactly: floor cells whose
centre is at least ``agent_radius + cell_size / 2`` from every wall and furniture footprint, in
connected regions of at least 1 m^2 (the same rules as
:func:`rendering.navigable.find_navigable_floor`, which recovers nearly the same cells from the
mesh alone).

URI form: ``procedural:<seed>`` or ``procedural:<seed>?rooms=3&objects=12`` (query keys are the
fields of :class:`ProceduralSceneParams`). Same seed and parameters -> identical mesh and
byte-identical GLB export (on the same library versions).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import numpy as np
import trimesh
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from trimesh.visual.material import PBRMaterial
from trimesh.visual.texture import TextureVisuals

from rendering.backend import SceneLoadError
from rendering import scene_uri
from rendering.scene_uri import PROCEDURAL_PREFIX, split_procedural
from rendering.navigable import NavigableGrid, keep_large_regions
from rendering.scenes import textures

PREFIX = PROCEDURAL_PREFIX  # re-exported
WALL_THICKNESS = 0.1
STEP_HEIGHT = 0.2
MIN_REGION_AREA_M2 = 1.0
PATTERN_CHOICES = textures.PATTERNS


class ProceduralSceneParams(BaseModel):
    """Knobs of the procedural generator (validated; unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rooms: int = Field(2, ge=1, le=16, description="number of rooms")
    objects: int = Field(10, ge=0, le=200, description="furniture pieces on the floor (at most; "
                         "pieces that find no free spot are skipped)")
    pictures: int = Field(2, ge=0, le=8, description="pictures on the walls, per room (at most)")
    room_size_min: float = Field(3.0, ge=2.0, le=30.0, description="room side length range, metres")
    room_size_max: float = Field(6.0, ge=2.0, le=30.0)
    ceiling_min: float = Field(2.4, ge=2.2, le=8.0, description="ceiling height range, metres")
    ceiling_max: float = Field(3.0, ge=2.2, le=8.0)
    texture_size: int = Field(256, ge=16, le=2048, description="texture side in pixels")
    photo_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of photograph textures")
    cell_size: float = Field(0.1, ge=0.02, le=0.5, description="navigable grid cell, metres")
    agent_radius: float = Field(0.2, ge=0.0, le=1.0, description="clearance from obstacles, metres")

    @model_validator(mode="after")
    def _ranges(self) -> "ProceduralSceneParams":
        if self.room_size_min > self.room_size_max:
            raise ValueError(f"room_size_min ({self.room_size_min}) > room_size_max ({self.room_size_max})")
        if self.ceiling_min > self.ceiling_max:
            raise ValueError(f"ceiling_min ({self.ceiling_min}) > ceiling_max ({self.ceiling_max})")
        return self

    def digest(self) -> str:
        """Short stable hash of all values (names cache files)."""
        text = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_procedural_uri(uri: str) -> tuple[int, ProceduralSceneParams]:
    """``procedural:<seed>[?key=value&...]`` -> (seed, params); SceneLoadError naming the problem."""
    try:
        seed_text, query = split_procedural(uri)
    except ValueError as err:
        raise SceneLoadError(str(err)) from None
    if not seed_text.isdigit():
        raise SceneLoadError(f"{uri}: seed must be a non-negative integer, got {seed_text!r}")
    seed = int(seed_text)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise SceneLoadError(f"{uri}: malformed query string: {exc}") from exc
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise SceneLoadError(f"{uri}: parameter {key!r} given twice")
        values[key] = value
    try:
        params = ProceduralSceneParams.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in exc.errors()
        )
        known = ", ".join(ProceduralSceneParams.model_fields)
        raise SceneLoadError(f"{uri}: invalid procedural scene parameters: {problems} (known: {known})") from exc
    return seed, params


def procedural_uri(seed: int, params: ProceduralSceneParams | None = None) -> str:
    """The canonical URI of a procedural scene (only non-default parameters, sorted)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if params is None:
        return scene_uri.procedural_uri(seed)
    changed = params.model_dump(exclude_defaults=True)
    return scene_uri.procedural_uri(seed, "&".join(f"{k}={changed[k]}" for k in sorted(changed)))


# ------------------------------------------------------------------------------------------------
# Geometry accumulation: one trimesh per material, vertices/UVs rounded to float32 like a GLB.
# ------------------------------------------------------------------------------------------------


@dataclass
class _Material:
    name: str
    image: np.ndarray  # uint8 (S, S, 3)
    metres_per_repeat: float


@dataclass
class _Builder:
    materials: list[_Material] = field(default_factory=list)
    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=list)

    def material(self, name: str, image: np.ndarray, metres_per_repeat: float) -> int:
        self.materials.append(_Material(name, image, metres_per_repeat))
        self.parts.append([])
        return len(self.materials) - 1

    def add(self, mat: int, verts: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> None:
        self.parts[mat].append((verts, faces, uv))

    def quad(self, mat: int, corners: np.ndarray, outward: np.ndarray, uv: np.ndarray | None = None) -> None:
        """A planar quad (4 corners in order around it) facing ``outward``; planar UVs in metres."""
        corners = np.asarray(corners, dtype=np.float64)
        normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
        if np.dot(normal, outward) < 0:
            corners = corners[::-1]
            uv = None if uv is None else uv[::-1]
        if uv is None:
            uv = _planar_uv(corners, outward) / self.materials[mat].metres_per_repeat
        self.add(mat, corners, np.array([[0, 1, 2], [0, 2, 3]]), uv)

    def build(self) -> trimesh.Scene:
        scene = trimesh.Scene()
        for index, (mat, parts) in enumerate(zip(self.materials, self.parts)):
            if not parts:
                continue
            offsets = np.cumsum([0] + [len(v) for v, _, _ in parts[:-1]])
            verts = np.concatenate([v for v, _, _ in parts]).astype(np.float32).astype(np.float64)
            uv = np.concatenate([u for _, _, u in parts]).astype(np.float32).astype(np.float64)
            faces = np.concatenate([f + o for (_, f, _), o in zip(parts, offsets)]).astype(np.int64)
            material = PBRMaterial(
                name=mat.name,
                baseColorTexture=Image.fromarray(mat.image, mode="RGB"),
                baseColorFactor=np.array([255, 255, 255, 255], dtype=np.uint8),
                metallicFactor=0.0,
                roughnessFactor=1.0,
            )
            mesh = trimesh.Trimesh(
                vertices=verts, faces=faces, visual=TextureVisuals(uv=uv, material=material), process=False
            )
            name = f"{index:03d}_{mat.name}"
            scene.add_geometry(mesh, geom_name=name, node_name=name)
        return scene


def _planar_uv(points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Metres in the plane: horizontal surfaces use (x, z), walls (horizontal, y) so images stand up."""
    n = np.abs(np.asarray(normal, dtype=np.float64))
    if n[1] >= max(n[0], n[2]):
        return points[:, [0, 2]]
    if n[0] >= n[2]:
        return np.stack([points[:, 2] * -np.sign(normal[0]), points[:, 1]], axis=1)
    return np.stack([points[:, 0] * np.sign(normal[2]), points[:, 1]], axis=1)


def _yaw_matrix(yaw: float, centre: np.ndarray) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.eye(4)
    m[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    m[:3, 3] = centre
    return m


_BOX_FACES = {  # corner indices (bit 2: x, bit 1: y, bit 0: z), counter-clockwise from outside
    "+x": ([4, 6, 7, 5], [1, 0, 0]), "-x": ([0, 1, 3, 2], [-1, 0, 0]),
    "+y": ([2, 3, 7, 6], [0, 1, 0]), "-y": ([0, 4, 5, 1], [0, -1, 0]),
    "+z": ([1, 5, 7, 3], [0, 0, 1]), "-z": ([0, 2, 6, 4], [0, 0, -1]),
}


def _box(b: _Builder, mat: int, lo, hi, transform: np.ndarray | None = None,
         faces: str = "+x-x+y-y+z-z") -> None:
    """An axis-aligned box in local coordinates (then ``transform``), UVs in local metres."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    keys = [faces[i:i + 2] for i in range(0, len(faces), 2)]
    scale = b.materials[mat].metres_per_repeat
    pts = np.concatenate([corners[_BOX_FACES[k][0]] for k in keys])
    uv = np.concatenate([_planar_uv(corners[_BOX_FACES[k][0]], np.array(_BOX_FACES[k][1], float)) for k in keys])
    if transform is not None:
        pts = pts @ transform[:3, :3].T + transform[:3, 3]
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    tri = (quad[None] + 4 * np.arange(len(keys))[:, None, None]).reshape(-1, 3)
    b.add(mat, pts, tri, uv / scale)


def _cylinder(b: _Builder, mat: int, centre: np.ndarray, radius: float, y0: float, y1: float,
              segments: int = 24) -> None:
    """Side and top cap of an upright cylinder (the bottom rests on something and is never seen)."""
    scale = b.materials[mat].metres_per_repeat
    ang = np.linspace(0.0, 2 * np.pi, segments + 1)
    x = centre[0] + radius * np.cos(ang)
    z = centre[2] + radius * np.sin(ang)
    bottom = np.stack([x, np.full_like(x, y0), z], axis=1)
    top = np.stack([x, np.full_like(x, y1), z], axis=1)
    verts = np.concatenate([bottom, top])
    u = ang * radius / scale
    uv = np.concatenate([np.stack([u, np.full_like(u, y0 / scale)], 1), np.stack([u, np.full_like(u, y1 / scale)], 1)])
    n = segments + 1
    i = np.arange(segments)
    # Outward winding: seen from outside, bottom(i) -> top(i) -> top(i+1) turns counter-clockwise.
    side = np.concatenate([np.stack([i, n + i, n + i + 1], 1), np.stack([i, n + i + 1, i + 1], 1)])
    b.add(mat, verts, side, uv)
    cap = np.concatenate([[[centre[0], y1, centre[2]]], top[:-1]])
    cap_uv = cap[:, [0, 2]] / scale
    j = np.arange(segments)
    fan = np.stack([np.zeros(segments, dtype=np.int64), 1 + (j + 1) % segments, 1 + j], 1)
    b.add(mat, cap, fan, cap_uv)


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rect:
    """An obstacle footprint in XZ: centre, half extents in its own frame, yaw (or a circle)."""

    cx: float
    cz: float
    hx: float
    hz: float
    yaw: float = 0.0
    circle: bool = False

    def aabb(self, pad: float = 0.0) -> tuple[float, float, float, float]:
        if self.circle:
            ex = ez = self.hx
        else:
            c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
            ex, ez = c * self.hx + s * self.hz, s * self.hx + c * self.hz
        return (self.cx - ex - pad, self.cz - ez - pad, self.cx + ex + pad, self.cz + ez + pad)

    def distance(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dz = x - self.cx, z - self.cz
        if self.circle:
            return np.maximum(np.hypot(dx, dz) - self.hx, 0.0)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        # Local frame of _yaw_matrix: world = R(yaw) @ local, so local = R^T @ world.
        lx = c * dx - s * dz
        lz = s * dx + c * dz
        ox = np.maximum(np.abs(lx) - self.hx, 0.0)
        oz = np.maximum(np.abs(lz) - self.hz, 0.0)
        return np.hypot(ox, oz)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class _Room:
    col: int
    row: int
    x0: float
    x1: float
    z0: float
    z1: float
    floor_mat: int = -1
    wall_mat: int = -1

    @property
    def inner(self) -> tuple[float, float, float, float]:
        t = WALL_THICKNESS / 2
        return (self.x0 + t, self.z0 + t, self.x1 - t, self.z1 - t)


def _grow_rooms(rng: np.random.Generator, n: int) -> tuple[list[tuple[int, int]], set[frozenset]]:
    """A connected set of ``n`` grid cells and the doors (cell pairs) of a spanning tree plus extras."""
    side = math.isqrt(max(n - 1, 0)) + 2
    cells = [(int(rng.integers(side)), int(rng.integers(side)))]
    chosen = set(cells)
    doors: set[frozenset] = set()
    steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
    while len(cells) < n:
        base = cells[int(rng.integers(len(cells)))]
        dc, dr = steps[int(rng.integers(4))]
        cand = (base[0] + dc, base[1] + dr)
        if not (0 <= cand[0] < side and 0 <= cand[1] < side) or cand in chosen:
            continue
        cells.append(cand)
        chosen.add(cand)
        doors.add(frozenset((base, cand)))
    for cell in cells:  # a few extra doors make loops, as real floor plans have
        for dc, dr in steps[:2] + steps[2:3]:
            other = (cell[0] + dc, cell[1] + dr)
            if other in chosen and frozenset((cell, other)) not in doors and rng.random() < 0.3:
                doors.add(frozenset((cell, other)))
    return cells, doors


def _pick_texture(rng: np.random.Generator, params: ProceduralSceneParams, patterns=PATTERN_CHOICES,
                  photos: tuple[str, ...] = textures.PHOTO_FILES) -> tuple[np.ndarray, str]:
    """A photograph (share ``photo_fraction``) or a procedural pattern, and a label saying which."""
    size = params.texture_size
    if rng.random() < params.photo_fraction:
        name = photos[int(rng.integers(len(photos)))]
        return textures.photo_texture(rng, size, name=name), "photo-" + name.split(".")[0]
    pattern = patterns[int(rng.integers(len(patterns)))]
    return textures.pattern_texture(rng, size, pattern), pattern


def generate_procedural_scene(
    seed: int, params: ProceduralSceneParams | None = None
) -> tuple[trimesh.Scene, NavigableGrid]:
    """The scene of ``seed`` (render contract of :mod:`rendering.scenes`) and its exact floor grid."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SceneLoadError(f"{PROCEDURAL_PREFIX}{seed}: seed must be a non-negative integer")
    params = params or ProceduralSceneParams()
    name = procedural_uri(int(seed), params)
    rng = np.random.default_rng(int(seed))
    b = _Builder()
    t = WALL_THICKNESS

    # --- rooms on a grid with random column widths and row depths ------------------------------
    cells, doors = _grow_rooms(rng, params.rooms)
    ncol = max(c for c, _ in cells) + 1
    nrow = max(r for _, r in cells) + 1
    widths = rng.uniform(params.room_size_min, params.room_size_max, ncol)
    depths = rng.uniform(params.room_size_min, params.room_size_max, nrow)
    xs = np.concatenate([[0.0], np.cumsum(widths)])
    zs = np.concatenate([[0.0], np.cumsum(depths)])
    height = float(rng.uniform(params.ceiling_min, params.ceiling_max))
    rooms = {cell: _Room(cell[0], cell[1], xs[cell[0]], xs[cell[0] + 1], zs[cell[1]], zs[cell[1] + 1])
             for cell in cells}

    def pool(role: str, count: int, patterns, photos, scale: tuple[float, float]) -> list[int]:
        mats = []
        for i in range(count):
            image, label = _pick_texture(rng, params, patterns, photos)
            mats.append(b.material(f"{role}{i}-{label}", image, float(rng.uniform(*scale))))
        return mats

    floor_pool = pool("floor", min(len(cells), 4), ("tiles", "wood", "checker", "noise"),
                      textures.SURFACE_PHOTO_FILES, (0.6, 2.5))
    wall_pool = pool("wall", min(len(cells), 4), ("stripes", "noise", "tiles"),
                     textures.SURFACE_PHOTO_FILES, (0.8, 3.0))
    ceiling = b.material("ceiling-noise", textures.pattern_texture(rng, params.texture_size, "noise"),
                         float(rng.uniform(1.0, 3.0)))
    object_pool = pool("object", 4, PATTERN_CHOICES, textures.PHOTO_FILES, (0.3, 1.5))
    floor_of = rng.permutation(len(cells)) % len(floor_pool)  # every pooled material gets used
    wall_of = rng.permutation(len(cells)) % len(wall_pool)
    for k, room in enumerate(rooms.values()):
        room.floor_mat = floor_pool[int(floor_of[k])]
        room.wall_mat = wall_pool[int(wall_of[k])]
        b.quad(room.floor_mat, [[room.x0, 0, room.z0], [room.x1, 0, room.z0], [room.x1, 0, room.z1],
                                [room.x0, 0, room.z1]], np.array([0.0, 1.0, 0.0]))
        b.quad(ceiling, [[room.x0, height, room.z0], [room.x1, height, room.z0],
                         [room.x1, height, room.z1], [room.x0, height, room.z1]], np.array([0.0, -1.0, 0.0]))

    # --- walls, doors and corner posts ---------------------------------------------------------
    obstacles: list[_Rect] = []
    keep_out: list[tuple[float, float, float, float]] = []
    posts: dict[tuple[int, int], int] = {}

    def wall_line(axis: str, fixed: float, a: float, b_: float, sides: tuple[_Room | None, _Room | None],
                  door: tuple[float, float, float] | None) -> None:
        """A wall along ``axis`` ('x' or 'z') at ``fixed``, spanning [a, b_] between corner posts."""
        neg, pos = sides  # rooms on the lower / higher side of the fixed coordinate
        mat_neg = (neg or pos).wall_mat
        mat_pos = (pos or neg).wall_mat
        pieces = [(a, b_, 0.0, height)] if door is None else [
            (a, door[0], 0.0, height), (door[1], b_, 0.0, height), (door[0], door[1], door[2], height)]
        for lo_a, hi_a, y0, y1 in pieces:
            if hi_a - lo_a < 1e-6:
                continue
            is_lintel = y0 > 0
            if axis == "x":
                lo, hi = [lo_a, y0, fixed - t / 2], [hi_a, y1, fixed + t / 2]
                ends = ("" if is_lintel else ("+x" if door and abs(hi_a - door[0]) < 1e-9 else "")
                        + ("-x" if door and abs(lo_a - door[1]) < 1e-9 else ""))
                _box(b, mat_neg, lo, hi, faces="-z" + ends + ("-y" if is_lintel else ""))
                _box(b, mat_pos, lo, hi, faces="+z")
                if not is_lintel:
                    obstacles.append(_Rect((lo_a + hi_a) / 2, fixed, (hi_a - lo_a) / 2, t / 2))
            else:
                lo, hi = [fixed - t / 2, y0, lo_a], [fixed + t / 2, y1, hi_a]
                ends = ("" if is_lintel else ("+z" if door and abs(hi_a - door[0]) < 1e-9 else "")
                        + ("-z" if door and abs(lo_a - door[1]) < 1e-9 else ""))
                _box(b, mat_neg, lo, hi, faces="-x" + ends + ("-y" if is_lintel else ""))
                _box(b, mat_pos, lo, hi, faces="+x")
                if not is_lintel:
                    obstacles.append(_Rect(fixed, (lo_a + hi_a) / 2, t / 2, (hi_a - lo_a) / 2))

    def make_door(a: float, b_: float) -> tuple[float, float, float]:
        length = b_ - a
        width = float(min(rng.uniform(1.0, 1.3), length - 0.6))
        start = float(rng.uniform(a + 0.3, b_ - 0.3 - width))
        door_h = float(min(rng.uniform(2.0, 2.2), height - 0.15))
        return (start, start + width, door_h)

    for i in range(ncol + 1):  # walls along z at x = xs[i]
        for j in range(nrow):
            left, right = rooms.get((i - 1, j)), rooms.get((i, j))
            if left is None and right is None:
                continue
            a, b_ = zs[j] + t / 2, zs[j + 1] - t / 2
            door = None
            if left and right and frozenset(((i - 1, j), (i, j))) in doors:
                door = make_door(a, b_)
                keep_out.append((xs[i] - 1.0, door[0] - 0.2, xs[i] + 1.0, door[1] + 0.2))
            wall_line("z", xs[i], a, b_, (left, right), door)
            posts.setdefault((i, j), (left or right).wall_mat)
            posts.setdefault((i, j + 1), (left or right).wall_mat)
    for j in range(nrow + 1):  # walls along x at z = zs[j]
        for i in range(ncol):
            below, above = rooms.get((i, j - 1)), rooms.get((i, j))
            if below is None and above is None:
                continue
            a, b_ = xs[i] + t / 2, xs[i + 1] - t / 2
            door = None
            if below and above and frozenset(((i, j - 1), (i, j))) in doors:
                door = make_door(a, b_)
                keep_out.append((door[0] - 0.2, zs[j] - 1.0, door[1] + 0.2, zs[j] + 1.0))
            wall_line("x", zs[j], a, b_, (below, above), door)
            posts.setdefault((i, j), (below or above).wall_mat)
            posts.setdefault((i + 1, j), (below or above).wall_mat)
    for (i, j), mat in sorted(posts.items()):
        _box(b, mat, [xs[i] - t / 2, 0.0, zs[j] - t / 2], [xs[i] + t / 2, height, zs[j] + t / 2],
             faces="+x-x+z-z")
        obstacles.append(_Rect(xs[i], zs[j], t / 2, t / 2))

    # --- furniture -----------------------------------------------------------------------------
    room_list = [rooms[c] for c in cells]
    areas = np.array([(r.x1 - r.x0) * (r.z1 - r.z0) for r in room_list])
    used_area = np.zeros(len(room_list))
    placed: list[tuple[float, float, float, float]] = []
    for _ in range(params.objects):
        k = int(rng.choice(len(room_list), p=areas / areas.sum()))
        room = room_list[k]
        kind = ("box", "table", "shelf", "cylinder")[int(rng.choice(4, p=[0.3, 0.25, 0.2, 0.25]))]
        mat = object_pool[int(rng.integers(len(object_pool)))]
        for _attempt in range(20):
            rect, extra = _propose(rng, kind, room)
            box_ = rect.aabb()
            ix0, iz0, ix1, iz1 = room.inner
            inside = box_[0] >= ix0 + 0.02 and box_[1] >= iz0 + 0.02 and box_[2] <= ix1 - 0.02 and box_[3] <= iz1 - 0.02
            footprint = rect.hx * rect.hz * (math.pi if rect.circle else 4.0)
            if (not inside or used_area[k] + footprint > 0.3 * areas[k]
                    or any(_overlaps(rect.aabb(0.1), o) for o in placed)
                    or any(_overlaps(box_, z) for z in keep_out)):
                continue
            _build_object(b, rng, kind, rect, extra, mat, object_pool)
            placed.append(box_)
            obstacles.append(rect)
            used_area[k] += footprint
            break

    # --- pictures on the walls -----------------------------------------------------------------
    picture_mats: list[int] = []
    for room in room_list:
        for _ in range(params.pictures):
            _place_picture(b, rng, room, height, keep_out, placed, picture_mats, params)

    mesh = b.build()
    grid = _layout_grid(room_list, obstacles, params, name)
    return mesh, grid


def _propose(rng: np.random.Generator, kind: str, room: _Room) -> tuple[_Rect, dict]:
    """A random footprint (and shape details) for a piece of furniture in ``room``."""
    ix0, iz0, ix1, iz1 = room.inner
    if kind == "shelf":
        w, d, h = rng.uniform(0.6, 1.4), rng.uniform(0.25, 0.4), rng.uniform(1.0, 2.0)
        side = int(rng.integers(4))  # back against one of the four walls, facing into the room
        if side in (0, 1):  # walls along x (z = iz0 or iz1)
            cx = rng.uniform(ix0 + w / 2 + 0.05, max(ix1 - w / 2 - 0.05, ix0 + w / 2 + 0.05))
            cz = iz0 + 0.03 + d / 2 if side == 0 else iz1 - 0.03 - d / 2
            yaw = 0.0 if side == 0 else math.pi
        else:
            cz = rng.uniform(iz0 + w / 2 + 0.05, max(iz1 - w / 2 - 0.05, iz0 + w / 2 + 0.05))
            cx = ix0 + 0.03 + d / 2 if side == 2 else ix1 - 0.03 - d / 2
            yaw = math.pi / 2 if side == 2 else -math.pi / 2
        return _Rect(cx, cz, w / 2, d / 2, yaw), {"height": h}
    if kind == "cylinder":
        r = rng.uniform(0.15, 0.45)
        return _Rect(rng.uniform(ix0, ix1), rng.uniform(iz0, iz1), r, r, circle=True), {
            "height": rng.uniform(0.3, 1.1)}
    if kind == "table":
        w, d = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
        return _Rect(rng.uniform(ix0, ix1), rng.uniform(iz0, iz1), w / 2, d / 2, rng.uniform(0, math.pi)), {
            "height": rng.uniform(0.7, 0.78)}
    w, d = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2)
    return _Rect(rng.uniform(ix0, ix1), rng.uniform(iz0, iz1), w / 2, d / 2, rng.uniform(0, math.pi)), {
        "height": rng.uniform(0.3, 1.2)}


def _build_object(b: _Builder, rng: np.random.Generator, kind: str, rect: _Rect, extra: dict,
                  mat: int, object_pool: list[int]) -> None:
    h = float(extra["height"])
    if kind == "cylinder":
        _cylinder(b, mat, np.array([rect.cx, 0.0, rect.cz]), rect.hx, 0.0, h)
        return
    pose = _yaw_matrix(rect.yaw, np.array([rect.cx, 0.0, rect.cz]))
    hx, hz = rect.hx, rect.hz
    if kind == "box":
        _box(b, mat, [-hx, 0.0, -hz], [hx, h, hz], pose, faces="+x-x+y+z-z")
    elif kind == "table":
        top = 0.04
        _box(b, mat, [-hx, h - top, -hz], [hx, h, hz], pose)
        leg = 0.035
        for sx in (-1, 1):
            for sz in (-1, 1):
                lx, lz = sx * (hx - 0.08), sz * (hz - 0.08)
                _box(b, mat, [lx - leg, 0.0, lz - leg], [lx + leg, h - top, lz + leg], pose, faces="+x-x+z-z")
        for _ in range(int(rng.integers(0, 3))):  # a few things lying on the table
            item = object_pool[int(rng.integers(len(object_pool)))]
            ih = rng.uniform(0.08, 0.3)
            if rng.random() < 0.5:
                s = rng.uniform(0.05, 0.15)
                px, pz = rng.uniform(-hx + s, hx - s), rng.uniform(-hz + s, hz - s)
                _box(b, item, [px - s, h, pz - s], [px + s, h + ih, pz + s], pose, faces="+x-x+y+z-z")
            else:
                r = rng.uniform(0.04, 0.1)
                px, pz = rng.uniform(-hx + r, hx - r), rng.uniform(-hz + r, hz - r)
                centre = trimesh.transform_points(np.array([[px, 0.0, pz]]), pose)[0]
                _cylinder(b, item, centre, r, h, h + ih, segments=16)
    else:  # shelf: open towards local +z (into the room), back panel at local -z
        p = 0.02
        _box(b, mat, [-hx, 0.0, -hz], [hx, h, -hz + p], pose)  # back
        _box(b, mat, [-hx, 0.0, -hz], [-hx + p, h, hz], pose)  # sides
        _box(b, mat, [hx - p, 0.0, -hz], [hx, h, hz], pose)
        boards = int(rng.integers(3, 6))
        for level in np.linspace(0.0, h - p, boards):
            _box(b, mat, [-hx + p, level, -hz + p], [hx - p, level + p, hz], pose)


def _place_picture(b: _Builder, rng: np.random.Generator, room: _Room, height: float,
                   keep_out, placed, picture_mats: list[int], params: ProceduralSceneParams) -> None:
    """A photograph in a frame-less rectangle on one wall of ``room``, clear of doors and shelves."""
    ix0, iz0, ix1, iz1 = room.inner
    side = int(rng.integers(4))
    w, h = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9)
    cy = float(min(rng.uniform(1.2, 1.7), height - h / 2 - 0.1))
    off = 0.01
    if side in (0, 1):
        if ix1 - ix0 < w + 0.4:
            return
        cx = rng.uniform(ix0 + w / 2 + 0.2, ix1 - w / 2 - 0.2)
        z = iz0 + off if side == 0 else iz1 - off
        foot = (cx - w / 2, z - 0.5, cx + w / 2, z + 0.5)
        corners = [[cx - w / 2, cy - h / 2, z], [cx + w / 2, cy - h / 2, z], [cx + w / 2, cy + h / 2, z],
                   [cx - w / 2, cy + h / 2, z]]
        outward = np.array([0.0, 0.0, 1.0 if side == 0 else -1.0])
    else:
        if iz1 - iz0 < w + 0.4:
            return
        cz = rng.uniform(iz0 + w / 2 + 0.2, iz1 - w / 2 - 0.2)
        x = ix0 + off if side == 2 else ix1 - off
        foot = (x - 0.5, cz - w / 2, x + 0.5, cz + w / 2)
        corners = [[x, cy - h / 2, cz - w / 2], [x, cy - h / 2, cz + w / 2], [x, cy + h / 2, cz + w / 2],
                   [x, cy + h / 2, cz - w / 2]]
        outward = np.array([1.0 if side == 2 else -1.0, 0.0, 0.0])
    if any(_overlaps(foot, z) for z in keep_out) or any(_overlaps(foot, o) for o in placed):
        return
    corners = np.array(corners, dtype=np.float64)
    # Whole image, upright: left-to-right as seen from the room, bottom row at the bottom.
    right = np.cross(np.array([0.0, 1.0, 0.0]), outward)
    order = np.argsort(corners @ right, kind="stable")
    left_pts = corners[order[:2]]
    right_pts = corners[order[2:]]
    bl, tl = sorted(left_pts, key=lambda p: p[1])
    br, tr = sorted(right_pts, key=lambda p: p[1])
    quad = np.array([bl, br, tr, tl])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    if len(picture_mats) < 6:
        photo = textures.PICTURE_PHOTO_FILES[int(rng.integers(len(textures.PICTURE_PHOTO_FILES)))]
        image = textures.photo_texture(rng, params.texture_size, name=photo, whole=True)
        label = f"picture{len(picture_mats)}-photo-{photo.split('.')[0]}"
        picture_mats.append(b.material(label, image, 1.0))
        mat = picture_mats[-1]
    else:
        mat = picture_mats[int(rng.integers(len(picture_mats)))]
    b.quad(mat, quad, outward, uv)
    placed.append(foot)


def _layout_grid(rooms: list[_Room], obstacles: list[_Rect], params: ProceduralSceneParams,
                 name: str) -> NavigableGrid:
    """Exact floor from the layout: room floors minus the agent-radius margin around obstacles."""
    s = params.cell_size
    t = WALL_THICKNESS
    lo = np.array([min(r.x0 for r in rooms) - t / 2, min(r.z0 for r in rooms) - t / 2])
    hi = np.array([max(r.x1 for r in rooms) + t / 2, max(r.z1 for r in rooms) + t / 2])
    origin = np.floor(lo / s) * s - s
    ncols, nrows = (np.floor((hi - origin) / s).astype(np.int64) + 2).tolist()
    cx = origin[0] + (np.arange(ncols) + 0.5) * s
    cz = origin[1] + (np.arange(nrows) + 0.5) * s
    x, z = np.meshgrid(cx, cz)  # (rows, cols)
    floor = np.zeros(x.shape, dtype=bool)
    for r in rooms:
        floor |= (x >= r.x0) & (x < r.x1) & (z >= r.z0) & (z < r.z1)
    clearance = np.full(x.shape, np.inf)
    for ob in obstacles:
        clearance = np.minimum(clearance, ob.distance(x, z))
    ok = floor & (clearance >= params.agent_radius + s / 2)
    heights = np.where(ok, 0.0, np.nan)
    heights = keep_large_regions(heights, s, STEP_HEIGHT, MIN_REGION_AREA_M2)
    grid = NavigableGrid(heights, (float(origin[0]), float(origin[1])), s)
    if grid.is_empty:
        raise SceneLoadError(f"{name}: no navigable floor left (rooms too small for the agent radius?)")
    return grid

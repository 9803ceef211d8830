"""Scenes: loading a :class:`~rendering.backend.SceneSpec` into a mesh plus its navigable floor.

A scene URI is either a mesh file path (``.glb``, ``.gltf``, ``.obj``, ``.ply``; relative paths are
resolved against the working directory, a ``file://`` prefix is accepted) or
``procedural:<seed>`` with optional query parameters, e.g. ``procedural:7?rooms=2&objects=10``
(see :class:`rendering.scenes.procedural.ProceduralSceneParams`). A mesh file's frame and units
come from the spec alone: ``SceneSpec.up_axis="z"`` turns a Z-up file to +Y up on load and
``SceneSpec.scale`` (metres per unit) scales it; :mod:`rendering.scenes.sanity` refuses a file
whose extent or level surfaces contradict them, naming the unit or axis that fits.

Mesh contract (what every renderer backend consumes; ``LoadedScene.mesh``):

* A ``trimesh.Scene`` in world coordinates: metres, +Y up (glTF convention). Node transforms are
  baked into the vertices, so every node's transform is the identity and each geometry is drawn
  once as stored in ``scene.geometry``.
* Every geometry is a ``trimesh.Trimesh`` (triangles only) whose ``visual`` is one of:

  - ``trimesh.visual.TextureVisuals`` whose ``material`` is a ``PBRMaterial`` with
    ``baseColorFactor`` (RGBA uint8, 4 values) and ``baseColorTexture`` (a PIL image in mode
    ``"RGB"`` or ``"RGBA"``, or ``None``). When the texture is present ``visual.uv`` is a
    (V, 2) float array, one row per vertex, in trimesh's convention: ``(0, 0)`` is the
    *bottom-left* of the image (image row = ``(1 - v) * height``), and coordinates outside
    [0, 1] repeat (GL_REPEAT; procedural scenes use UVs in metres). Surface colour =
    texture(uv) * baseColorFactor / 255, or baseColorFactor alone when there is no texture
    (then ``visual.uv`` is ``None``).
  - ``trimesh.visual.ColorVisuals``: if ``visual.kind == "face"`` use ``visual.face_colors``
    (F, 4) uint8 per triangle, otherwise ``visual.vertex_colors`` (V, 4) uint8 interpolated.

* Renderers draw unlit (albedo only). Lighting, where there is any, is in the colours: the
  spec's ``shading`` bakes a fixed-direction Lambert term into flat-coloured geometry on load
  (:mod:`rendering.scenes.shading`), identically for every backend and every view. Face winding is counter-clockwise seen from the front, but renderers should draw
  both sides (scanned and exported meshes are not reliably consistent).

``scene_glb_path`` gives the same scene as a GLB file for backends that load files (Habitat):
``.glb`` files as they are, everything else exported once into a cache directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from rendering.atomic import atomic_path, atomic_write_bytes
from rendering.backend import SceneLoadError, SceneSpec
from rendering.navigable import NavigableGrid, find_navigable_floor, world_triangles
from rendering.scenes.mesh_files import SUPPORTED_EXTENSIONS, UP_AXIS_ROTATIONS, normalise_scene, read_mesh_file
from rendering.scenes.sanity import check_orientation, resolve_scale
from rendering.scene_uri import PROCEDURAL_PREFIX, is_procedural, mesh_path  # noqa: F401  (PROCEDURAL_PREFIX re-exported)
from rendering.scenes.shading import apply_shading


__all__ = [
    "LoadedScene",
    "load_scene",
    "scene_glb_path",
    "default_cache_dir",
    "is_procedural_uri",
    "export_glb_bytes",
    "SUPPORTED_EXTENSIONS",
]


@dataclass
class LoadedScene:
    scene_id: str
    uri: str
    mesh: trimesh.Scene
    navigable: NavigableGrid
    facts: dict = field(default_factory=dict)  # what loading found (scale used, triangles, ...)


is_procedural_uri = is_procedural  # rendering.scene_uri


def default_cache_dir() -> Path:
    """``$CROCOPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/crocopipe/scenes`` (``~/.cache`` default)."""
    explicit = os.environ.get("CROCOPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crocopipe" / "scenes"


def _file_path(uri: str) -> Path:
    return mesh_path(uri).expanduser().resolve()


def load_scene(spec: SceneSpec, cache_dir: Path | None = None) -> LoadedScene:
    """Load the scene ``spec`` names, with its navigable floor; raises ``SceneLoadError``.

    ``spec.up_axis`` and ``spec.scale`` apply to mesh files only; procedural scenes are +Y up in
    metres. ``spec.shading`` applies to both. With a ``cache_dir``, the navigable floor found in
    a mesh file is stored there (keyed by the file's content hash, up axis and scale) so other
    workers loading the same scene skip the search; an unreadable cache entry is recomputed.
    """
    uri = spec.uri
    if is_procedural_uri(uri):
        from rendering.scenes.procedural import generate_procedural_scene, parse_procedural_uri

        seed, params = parse_procedural_uri(uri)
        mesh, navigable = generate_procedural_scene(seed, params)
        mesh, detailed = apply_shading(mesh, spec.shading)
        extent = np.asarray(mesh.bounds[1] - mesh.bounds[0], dtype=np.float64)
        facts = {"up_axis": "y", "scale": 1.0, "units": "metres", "textured_fraction": detailed,
                 "triangles": _triangle_count(mesh), "degenerate_removed": 0, "extent_m": extent.round(3).tolist()}
        return LoadedScene(spec.scene_id, uri, mesh, navigable, facts)
    path = _file_path(uri)
    mesh, facts = load_mesh_scene(spec)
    if cache_dir is None:
        navigable = find_navigable_floor(mesh, scene_name=str(path))
    else:
        frame = _frame_tag(spec.up_axis, facts["scale"])
        navigable = _cached_floor(mesh, path, frame, Path(cache_dir))
    return LoadedScene(spec.scene_id, uri, mesh, navigable, facts)


def load_mesh_scene(spec: SceneSpec) -> tuple[trimesh.Scene, dict]:
    """A mesh file in the contract (metres, +Y up, shading baked) and the facts found on the way:
    the scale used and how it was decided, triangles, degenerate triangles removed, the level
    areas of the orientation check, the textured fraction."""
    path = _file_path(spec.uri)
    raw = read_mesh_file(path)
    mesh, file_facts = normalise_scene(raw, name=str(path), up_axis=spec.up_axis, scale=1.0)
    tris = world_triangles(mesh)
    extent = tris.reshape(-1, 3).max(axis=0) - tris.reshape(-1, 3).min(axis=0)
    scale, units = resolve_scale(extent, spec.scale, str(path))
    if scale != 1.0:
        mesh, file_facts = normalise_scene(raw, name=str(path), up_axis=spec.up_axis, scale=scale)
        tris = world_triangles(mesh)
    areas = check_orientation(tris, UP_AXIS_ROTATIONS[spec.up_axis], spec.up_axis, str(path))
    mesh, detailed = apply_shading(mesh, spec.shading)
    facts = {
        "up_axis": spec.up_axis, "scale": scale, "units": units, "extent_m": (extent * scale).round(3).tolist(),
        "triangles": file_facts.triangles, "degenerate_removed": file_facts.degenerate_removed,
        "level_area_m2": areas.round(2).tolist(), "textured_fraction": detailed,
    }
    return mesh, facts


def _frame_tag(up_axis: str, scale: float) -> str:
    """Cache-name part for the file frame: ``zup``, ``mzup`` (-z), ``yup_s0.001`` (scaled)."""
    tag = f"{up_axis.replace('-', 'm')}up"
    return tag if scale == 1.0 else f"{tag}_s{scale:.9g}"


def _triangle_count(mesh: trimesh.Scene) -> int:
    return int(sum(len(g.faces) for g in mesh.geometry.values() if isinstance(g, trimesh.Trimesh)))


FLOOR_CACHE_VERSION = 2  # bump when find_navigable_floor's defaults or rules change


def _cached_floor(mesh: trimesh.Scene, path: Path, frame: str, cache_dir: Path) -> NavigableGrid:
    target = cache_dir / f"{path.stem}-{_file_digest(path)}-{frame}-floor-v{FLOOR_CACHE_VERSION}.npz"
    if target.is_file():
        try:
            return NavigableGrid.load(target)
        except ValueError:
            pass  # a torn or foreign file: recompute and overwrite it below
    navigable = find_navigable_floor(mesh, scene_name=str(path))
    with atomic_path(target, ".npz") as tmp:
        navigable.save(tmp)
    return navigable


def export_glb_bytes(mesh: trimesh.Scene) -> bytes:
    """The scene as GLB bytes (deterministic for the same scene contents)."""
    return trimesh.exchange.gltf.export_glb(mesh, include_normals=False)


_write_atomic = atomic_write_bytes


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def scene_glb_path(spec: SceneSpec, cache_dir: Path | None = None) -> Path:
    """The scene as a GLB file on disk (+Y up, metres).

    A ``.glb`` file with ``spec.up_axis="y"``, no scale and ``shading="unlit"`` is returned as it
    is. Other files (and those whose shading, units or up axis change the mesh) and procedural
    scenes are exported once into ``cache_dir`` (default :func:`default_cache_dir`)
    under a name derived from their content (file hash or seed + parameters) and reused after.
    Procedural exports are byte-identical for the same seed and parameters.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    uri = spec.uri
    if is_procedural_uri(uri):
        from rendering.scenes.procedural import generate_procedural_scene, parse_procedural_uri

        seed, params = parse_procedural_uri(uri)
        lit = "-lambert" if spec.shading == "lambert" else ""  # "auto" leaves textured scenes as they are
        target = cache / f"procedural-{seed}-{params.digest()}{lit}.glb"
        if not target.is_file():
            mesh, _ = generate_procedural_scene(seed, params)
            mesh, _ = apply_shading(mesh, spec.shading)
            _write_atomic(target, export_glb_bytes(mesh))
        return target
    path = _file_path(uri)
    if path.suffix.lower() == ".glb" and spec.up_axis == "y" and spec.scale in (None, 1.0) and spec.shading == "unlit":
        if not path.is_file():
            raise SceneLoadError(f"{path}: mesh file not found")
        return path
    mesh, facts = load_mesh_scene(spec)  # validates existence, format, units and up axis first
    frame = f"{_frame_tag(spec.up_axis, facts['scale'])}-{spec.shading}"
    target = cache / f"{path.stem}-{_file_digest(path)}-{frame}.glb"
    if not target.is_file():
        _write_atomic(target, export_glb_bytes(mesh))
    return target

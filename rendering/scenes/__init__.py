"""Scenes: loading a :class:`~rendering.backend.SceneSpec` into a mesh plus its navigable floor.

A scene URI is either a mesh file path (``.glb``, ``.gltf``, ``.obj``, ``.ply``; relative paths are
resolved against the working directory, a ``file://`` prefix is accepted) or
``procedural:<seed>`` with optional query parameters, e.g. ``procedural:7?rooms=2&objects=10``
(see :class:`rendering.scenes.procedural.ProceduralSceneParams`). A mesh file's frame comes from
the spec alone: ``SceneSpec.up_axis="z"`` turns a Z-up file to +Y up on load.

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

* No lighting information is implied: renderers shade unlit (albedo only) unless they document
  otherwise. Face winding is counter-clockwise seen from the front, but renderers should draw
  both sides (scanned and exported meshes are not reliably consistent).

``scene_glb_path`` gives the same scene as a GLB file for backends that load files (Habitat):
``.glb`` files as they are, everything else exported once into a cache directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import trimesh

from rendering.backend import SceneLoadError, SceneSpec
from rendering.navigable import NavigableGrid, find_navigable_floor
from rendering.scenes.mesh_files import SUPPORTED_EXTENSIONS, load_mesh_file

PROCEDURAL_PREFIX = "procedural:"

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


def is_procedural_uri(uri: str) -> bool:
    return uri.startswith(PROCEDURAL_PREFIX)


def default_cache_dir() -> Path:
    """``$CROCOPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/crocopipe/scenes`` (``~/.cache`` default)."""
    explicit = os.environ.get("CROCOPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crocopipe" / "scenes"


def _file_path(uri: str) -> Path:
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return Path(uri).expanduser().resolve()


def load_scene(spec: SceneSpec, cache_dir: Path | None = None) -> LoadedScene:
    """Load the scene ``spec`` names, with its navigable floor; raises ``SceneLoadError``.

    ``spec.up_axis`` applies to mesh files only ("z" rotates Z-up files to +Y up); procedural
    scenes are +Y up. With a ``cache_dir``, the navigable floor found in a mesh file is stored there
    (keyed by the file's content hash) so other workers loading the same scene skip the search;
    an unreadable cache entry is recomputed and replaced.
    """
    uri = spec.uri
    if is_procedural_uri(uri):
        from rendering.scenes.procedural import generate_procedural_scene, parse_procedural_uri

        seed, params = parse_procedural_uri(uri)
        mesh, navigable = generate_procedural_scene(seed, params)
        return LoadedScene(spec.scene_id, uri, mesh, navigable)
    path = _file_path(uri)
    mesh = load_mesh_file(path, up_axis=spec.up_axis)
    if cache_dir is None:
        navigable = find_navigable_floor(mesh, scene_name=str(path))
    else:
        navigable = _cached_floor(mesh, path, spec.up_axis, Path(cache_dir))
    return LoadedScene(spec.scene_id, uri, mesh, navigable)


FLOOR_CACHE_VERSION = 1  # bump when find_navigable_floor's defaults or rules change


def _cached_floor(mesh: trimesh.Scene, path: Path, up_axis: str, cache_dir: Path) -> NavigableGrid:
    target = cache_dir / f"{path.stem}-{_file_digest(path)}-{up_axis}up-floor-v{FLOOR_CACHE_VERSION}.npz"
    if target.is_file():
        try:
            return NavigableGrid.load(target)
        except ValueError:
            pass  # a torn or foreign file: recompute and overwrite it below
    navigable = find_navigable_floor(mesh, scene_name=str(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.npz")
    navigable.save(tmp)
    os.replace(tmp, target)
    return navigable


def export_glb_bytes(mesh: trimesh.Scene) -> bytes:
    """The scene as GLB bytes (deterministic for the same scene contents)."""
    return trimesh.exchange.gltf.export_glb(mesh, include_normals=False)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def scene_glb_path(spec: SceneSpec, cache_dir: Path | None = None) -> Path:
    """The scene as a GLB file on disk (+Y up, metres).

    A ``.glb`` file with ``spec.up_axis="y"`` is returned as it is. Other files, Z-up files and
    procedural scenes are exported once into ``cache_dir`` (default :func:`default_cache_dir`)
    under a name derived from their content (file hash or seed + parameters) and reused after.
    Procedural exports are byte-identical for the same seed and parameters.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    uri = spec.uri
    if is_procedural_uri(uri):
        from rendering.scenes.procedural import generate_procedural_scene, parse_procedural_uri

        seed, params = parse_procedural_uri(uri)
        target = cache / f"procedural-{seed}-{params.digest()}.glb"
        if not target.is_file():
            mesh, _ = generate_procedural_scene(seed, params)
            _write_atomic(target, export_glb_bytes(mesh))
        return target
    path = _file_path(uri)
    if path.suffix.lower() == ".glb" and spec.up_axis == "y":
        if not path.is_file():
            raise SceneLoadError(f"{path}: mesh file not found")
        return path
    mesh = load_mesh_file(path, up_axis=spec.up_axis)  # validates existence and format first
    target = cache / f"{path.stem}-{_file_digest(path)}-{spec.up_axis}up.glb"
    if not target.is_file():
        _write_atomic(target, export_glb_bytes(mesh))
    return target

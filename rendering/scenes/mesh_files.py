"""Mesh-file scenes (GLB/glTF, OBJ+MTL, PLY with vertex colours) loaded into the render contract.

Files are read with trimesh and normalised into the mesh contract described in
:mod:`rendering.scenes` (world coordinates in metres, +Y up, node transforms baked in, every
geometry a ``Trimesh`` with either ``TextureVisuals`` + ``PBRMaterial`` or ``ColorVisuals``).
Before trimesh sees a file, its bytes are checked (empty file, Git LFS pointer) and glTF files go
through :mod:`rendering.scenes.gltf_files` (buffers present, Draco decoded, KTX2 refused). After
loading, triangles with repeated or collinear corners are dropped and NaN/infinite vertices are
refused. Every failure is a one-line :class:`~rendering.backend.SceneLoadError` naming the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial, SimpleMaterial
from trimesh.visual.texture import TextureVisuals

from rendering.backend import UP_AXES, SceneLoadError
from rendering.scenes import gltf_files
from rendering.scenes.sanity import check_file_bytes

SUPPORTED_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply")

# File frame -> world (+Y up) for each declared up axis: proper rotations taking that axis to +Y.
# "z" (many scanners and CAD tools): (x, y, z) -> (x, z, -y), a -90 degree turn about X.
UP_AXIS_ROTATIONS: dict[str, np.ndarray] = {
    "y": np.eye(3),
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "-y": np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]),
    "-z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "x": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "-x": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}
assert set(UP_AXIS_ROTATIONS) == set(UP_AXES)
Z_UP_TO_Y_UP = np.eye(4)
Z_UP_TO_Y_UP[:3, :3] = UP_AXIS_ROTATIONS["z"]


@dataclass(frozen=True)
class MeshFileFacts:
    """What loading found out about a file, for the scene check report."""

    triangles: int
    degenerate_removed: int


def up_axis_transform(up_axis: str, scale: float = 1.0) -> np.ndarray:
    """4x4 file -> world transform: the up-axis rotation times ``scale`` (metres per unit)."""
    if up_axis not in UP_AXIS_ROTATIONS:
        raise ValueError(f"up_axis must be one of {', '.join(UP_AXES)}, got {up_axis!r}")
    out = np.eye(4)
    out[:3, :3] = UP_AXIS_ROTATIONS[up_axis] * float(scale)
    return out


def read_mesh_file(path: str | Path) -> trimesh.Scene:
    """The file as trimesh reads it (file frame, file units), after the byte and glTF checks."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise SceneLoadError(
            f"{path}: unsupported mesh format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise SceneLoadError(f"{path}: mesh file not found")
    check_file_bytes(path)
    source: object = str(path)
    file_type = ext[1:]
    if ext in (".glb", ".gltf"):
        doc, buffers = gltf_files.read_document(path)
        gltf_files.check_textures(path, doc)
        if gltf_files.has_draco(doc):
            source, file_type = io.BytesIO(gltf_files.decode_draco_to_glb(path, doc, buffers)), "glb"
    try:
        # process=False: trimesh would otherwise drop NaN vertices silently (we refuse them by name)
        return trimesh.load_scene(source, file_type=file_type, process=False)
    except Exception as exc:  # trimesh raises many unrelated types for bad bytes
        raise SceneLoadError(
            f"{path}: cannot read {ext[1:].upper()} mesh: {type(exc).__name__}: {exc}".rstrip(": ")
        ) from exc


def load_mesh_file(path: str | Path, up_axis: str = "y", scale: float = 1.0) -> trimesh.Scene:
    """Load a mesh file as a contract-conforming ``trimesh.Scene`` (metres, +Y up)."""
    path = Path(path)
    if up_axis not in UP_AXIS_ROTATIONS:
        raise SceneLoadError(f"{path}: up_axis must be one of {', '.join(UP_AXES)}, got {up_axis!r}")
    return normalise_scene(read_mesh_file(path), name=str(path), up_axis=up_axis, scale=scale)[0]


def normalise_scene(
    scene: trimesh.Scene, name: str, up_axis: str = "y", scale: float = 1.0
) -> tuple[trimesh.Scene, MeshFileFacts]:
    """Bake node transforms, turn the up axis to +Y, scale to metres, convert visuals to the
    contract, drop non-triangles and degenerate triangles, refuse non-finite vertices."""
    out = trimesh.Scene()
    to_world = up_axis_transform(up_axis, scale)
    # File order (scene.geometry keeps it), not graph order, so names and draw order are stable.
    instances: dict[str, list[str]] = {}
    for node in scene.graph.nodes_geometry:
        instances.setdefault(scene.graph[node][1], []).append(node)
    index = degenerate = 0
    for geom_name, geom in scene.geometry.items():
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # point clouds, paths and empty primitives carry no surfaces to render
        bad = ~np.all(np.isfinite(geom.vertices), axis=1)
        if np.any(bad):
            first = int(np.flatnonzero(bad)[0])
            raise SceneLoadError(
                f"{name}: geometry {geom_name!r} has {int(bad.sum())} vertices with NaN or infinite coordinates "
                f"(first: vertex {first} = {np.asarray(geom.vertices[first]).tolist()}); fix or remove them"
            )
        nodes = sorted(instances.get(geom_name, []))
        for k, node in enumerate(nodes):
            transform, _ = scene.graph[node]
            mesh = geom.copy()
            full = to_world @ np.asarray(transform, dtype=np.float64)
            if not np.allclose(full, np.eye(4)):
                mesh.apply_transform(full)
            keep = _non_degenerate(mesh)
            if not np.all(keep):
                degenerate += int((~keep).sum())
                if not np.any(keep):
                    continue
                mesh.update_faces(keep)
            mesh.visual = _contract_visual(mesh)
            unique = geom_name if len(nodes) == 1 else f"{geom_name}#{k}"
            out.add_geometry(mesh, geom_name=unique, node_name=unique)
            index += 1
    if index == 0:
        if degenerate:
            raise SceneLoadError(
                f"{name}: no triangles left after removing {degenerate} degenerate ones "
                "(repeated or collinear corners)"
            )
        raise SceneLoadError(f"{name}: mesh is empty (no triangles)")
    triangles = sum(len(g.faces) for g in out.geometry.values())
    return out, MeshFileFacts(triangles=triangles, degenerate_removed=degenerate)


def _non_degenerate(mesh: trimesh.Trimesh) -> np.ndarray:
    """Faces with three distinct corners and a non-zero area (relative to their size)."""
    faces = np.asarray(mesh.faces)
    corners = np.asarray(mesh.vertices, dtype=np.float64)[faces]
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    cross = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    size = np.max(np.linalg.norm(corners - corners[:, [1, 2, 0]], axis=2), axis=1)
    return distinct & (cross > 1e-12 * np.maximum(size, 1e-30) ** 2) & (cross > 0)


def _rgb_image(image: Image.Image) -> Image.Image:
    """Textures as 8-bit RGB or RGBA, whatever the file stored (palette, grey, 16-bit...)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if image.mode in ("I", "I;16", "I;16B", "F"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGBA" if has_alpha else "RGB")


def _factor_rgba(value, default=(255, 255, 255, 255)) -> np.ndarray:
    """A colour factor as RGBA uint8 (trimesh stores them as uint8 or as floats in [0, 1])."""
    if value is None:
        return np.array(default, dtype=np.uint8)
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 3:
        arr = np.append(arr, 1.0 if arr.max() <= 1.0 else 255.0)
    if arr.max() <= 1.0 and np.asarray(value).dtype.kind == "f":
        arr = arr * 255.0
    return np.clip(np.round(arr[:4]), 0, 255).astype(np.uint8)


def _contract_visual(mesh: trimesh.Trimesh):
    """``TextureVisuals`` with a ``PBRMaterial`` (image and/or base colour), or ``ColorVisuals``."""
    visual = mesh.visual
    if isinstance(visual, TextureVisuals):
        material = visual.material
        uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
        if isinstance(material, SimpleMaterial):
            image = material.image
            # OBJ convention: map_Kd replaces Kd, so a textured material is not tinted by Kd.
            factor = _factor_rgba(None if image is not None else material.diffuse)
        elif isinstance(material, PBRMaterial):
            image = material.baseColorTexture
            factor = _factor_rgba(material.baseColorFactor)
        else:
            image, factor = None, _factor_rgba(None)
        if image is not None and (uv is None or len(uv) != len(mesh.vertices)):
            image = None  # a texture without coordinates cannot be sampled: keep the base colour
        if image is not None:
            image = _rgb_image(image)
        pbr = PBRMaterial(
            name=getattr(material, "name", None),
            baseColorTexture=image,
            baseColorFactor=factor,
            doubleSided=bool(getattr(material, "doubleSided", False)),
        )
        return TextureVisuals(uv=uv if image is not None else None, material=pbr)
    return visual  # ColorVisuals: per-vertex or per-face colours (default grey when none)

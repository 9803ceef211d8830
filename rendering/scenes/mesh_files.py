"""Mesh-file scenes (GLB/glTF, OBJ+MTL, PLY with vertex colours) loaded into the render contract.

Files are read with trimesh and normalised into the mesh contract described in
:mod:`rendering.scenes` (world coordinates in metres, +Y up, node transforms baked in, every
geometry a ``Trimesh`` with either ``TextureVisuals`` + ``PBRMaterial`` or ``ColorVisuals``).
Every failure is a :class:`~rendering.backend.SceneLoadError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial, SimpleMaterial
from trimesh.visual.texture import TextureVisuals

from rendering.backend import SceneLoadError

SUPPORTED_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply")

# Z-up files (many scanners and CAD tools): (x, y, z) -> (x, z, -y), a -90 degree turn about X.
Z_UP_TO_Y_UP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def load_mesh_file(path: str | Path, up_axis: Literal["y", "z"] = "y") -> trimesh.Scene:
    """Load a mesh file as a contract-conforming ``trimesh.Scene`` (metres, +Y up)."""
    path = Path(path)
    ext = path.suffix.lower()
    if up_axis not in ("y", "z"):
        raise SceneLoadError(f"{path}: up_axis must be 'y' or 'z', got {up_axis!r}")
    if ext not in SUPPORTED_EXTENSIONS:
        raise SceneLoadError(
            f"{path}: unsupported mesh format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise SceneLoadError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load_scene(str(path), file_type=ext[1:])
    except Exception as exc:  # trimesh raises many unrelated types for bad bytes
        raise SceneLoadError(f"{path}: cannot read {ext[1:].upper()} mesh: {type(exc).__name__}: {exc}") from exc
    return normalise_scene(loaded, name=str(path), up_axis=up_axis)


def normalise_scene(
    scene: trimesh.Scene, name: str, up_axis: Literal["y", "z"] = "y"
) -> trimesh.Scene:
    """Bake node transforms, rotate Z-up to Y-up, convert visuals to the contract, drop non-triangles."""
    out = trimesh.Scene()
    # File order (scene.geometry keeps it), not graph order, so names and draw order are stable.
    instances: dict[str, list[str]] = {}
    for node in scene.graph.nodes_geometry:
        instances.setdefault(scene.graph[node][1], []).append(node)
    index = 0
    for geom_name, geom in scene.geometry.items():
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # point clouds, paths and empty primitives carry no surfaces to render
        nodes = sorted(instances.get(geom_name, []))
        for k, node in enumerate(nodes):
            transform, _ = scene.graph[node]
            mesh = geom.copy()
            full = np.asarray(transform, dtype=np.float64)
            if up_axis == "z":
                full = Z_UP_TO_Y_UP @ full
            if not np.allclose(full, np.eye(4)):
                mesh.apply_transform(full)
            mesh.visual = _contract_visual(mesh)
            if not np.all(np.isfinite(mesh.vertices)):
                raise SceneLoadError(f"{name}: geometry {geom_name!r} has NaN or infinite vertices")
            unique = geom_name if len(nodes) == 1 else f"{geom_name}#{k}"
            out.add_geometry(mesh, geom_name=unique, node_name=unique)
            index += 1
    if index == 0:
        raise SceneLoadError(f"{name}: mesh is empty (no triangles)")
    return out


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

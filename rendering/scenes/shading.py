"""Baked Lambert shading: untextured geometry gets surface detail that every view agrees on.

A mesh with one flat colour per material renders, unlit, as uniform patches: co-visibility is
purely geometric, so such views pass every check and teach cross-view completion nothing. Here a
fixed-direction Lambert term plus ambient, computed from each triangle's world-space normal, is
multiplied into its colour once, on load. It depends on the surface only (never on the camera),
so the same surface has the same colour in every view: photometric consistency and co-visibility
hold, and both backends see the same colours (the shaded mesh is what they load or export).

``|n . L|`` is used (two-sided), because scanned meshes do not have reliable winding.
"""

from __future__ import annotations

import numpy as np
import trimesh
from trimesh.visual import ColorVisuals
from trimesh.visual.texture import TextureVisuals

LIGHT_DIRECTION = np.array([0.5, 0.8, 0.3]) / np.linalg.norm([0.5, 0.8, 0.3])  # world, +Y up
AMBIENT = 0.35
PALETTE_COLOURS = 64  # at most this many distinct face/vertex colours: a CAD-style palette, not a scan


def is_flat_coloured(mesh: trimesh.Trimesh) -> bool:
    """True for geometry coloured by material or by a small palette (no texture, no scanned colour)."""
    visual = mesh.visual
    if isinstance(visual, TextureVisuals):
        return getattr(visual.material, "baseColorTexture", None) is None
    if isinstance(visual, ColorVisuals):
        if not visual.defined:
            return True
        colours = visual.face_colors if visual.kind == "face" else visual.vertex_colors
        return len(np.unique(np.asarray(colours)[:, :3], axis=0)) <= PALETTE_COLOURS
    return True


def face_shade(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F,) shading factor in [AMBIENT, 1] of each triangle, from its world normal."""
    corners = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1)
    cosine = np.abs(normals @ LIGHT_DIRECTION) / np.where(length > 0, length, 1.0)
    return AMBIENT + (1.0 - AMBIENT) * np.clip(cosine, 0.0, 1.0)


def _base_rgba(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F, 4) uint8 colour of each face before shading (flat-coloured geometry only)."""
    visual = mesh.visual
    if isinstance(visual, TextureVisuals):
        factor = getattr(visual.material, "baseColorFactor", None)
        rgba = np.array([255, 255, 255, 255] if factor is None else factor, dtype=np.float64).reshape(-1)[:4]
        return np.tile(np.clip(rgba, 0, 255).astype(np.uint8), (len(mesh.faces), 1))
    return np.asarray(visual.face_colors, dtype=np.uint8)


def shade_geometry(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of a flat-coloured geometry with per-face colours = base colour x Lambert shade."""
    rgba = _base_rgba(mesh).astype(np.float64)
    rgba[:, :3] *= face_shade(mesh)[:, None]
    colours = np.clip(np.round(rgba), 0, 255).astype(np.uint8)
    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces),
        visual=ColorVisuals(face_colors=colours), process=False,
    )


def apply_shading(scene: trimesh.Scene, shading: str) -> tuple[trimesh.Scene, float]:
    """(scene with shading baked in, fraction of triangles that keep a texture or colour detail).

    ``"unlit"`` returns the scene as it is; ``"auto"`` shades flat-coloured geometries only;
    ``"lambert"`` shades flat-coloured ones the same way and multiplies the shade into the vertex
    colours of textured ones (each face gets its own three vertices so the shade stays flat).
    """
    if shading not in ("unlit", "lambert", "auto"):
        raise ValueError(f"shading must be 'unlit', 'lambert' or 'auto', got {shading!r}")
    total = detailed = 0
    flat = {}
    for name, geom in scene.geometry.items():
        if isinstance(geom, trimesh.Trimesh):
            flat[name] = is_flat_coloured(geom)
            total += len(geom.faces)
            detailed += 0 if flat[name] else len(geom.faces)
    fraction = detailed / total if total else 0.0
    if shading == "unlit" or not any(flat.values()) and shading == "auto":
        return scene, fraction
    out = trimesh.Scene()
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
            if flat[name]:
                geom = shade_geometry(geom)
            elif shading == "lambert":
                geom = _shade_textured(geom)
        out.add_geometry(geom, geom_name=name, node_name=node, transform=np.asarray(transform))
    return out, fraction


def _shade_textured(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Textured or colour-varying geometry with the shade multiplied into per-corner colours."""
    faces = np.asarray(mesh.faces)
    shade = np.repeat(face_shade(mesh), 3)
    vertices = np.asarray(mesh.vertices)[faces].reshape(-1, 3)
    new_faces = np.arange(len(vertices)).reshape(-1, 3)
    visual = mesh.visual
    if isinstance(visual, TextureVisuals):
        uv = None if visual.uv is None else np.asarray(visual.uv)[faces].reshape(-1, 2)
        colours = np.full((len(vertices), 4), 255.0)
        colours[:, :3] *= shade[:, None]
        shaded = TextureVisuals(uv=uv, material=visual.material)
        shaded.vertex_attributes["color"] = np.clip(np.round(colours), 0, 255).astype(np.uint8)
    else:
        corner = np.asarray(visual.face_colors, dtype=np.float64)[np.repeat(np.arange(len(faces)), 3)] \
            if visual.kind == "face" else np.asarray(visual.vertex_colors, dtype=np.float64)[faces.reshape(-1)]
        corner[:, :3] *= shade[:, None]
        shaded = ColorVisuals(vertex_colors=np.clip(np.round(corner), 0, 255).astype(np.uint8))
    return trimesh.Trimesh(vertices=vertices, faces=new_faces, visual=shaded, process=False)

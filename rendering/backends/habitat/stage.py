"""Habitat stage preparation: a GLB as a habitat-sim *stage* in the right frame, lit as the contract asks.

habitat-sim treats a bare ``.glb`` as a Z-up Matterport mesh, so GLBs are loaded through a stage
config that states their convention (glTF: +Y up, -Z front; Z-up datasets: +Z up, +Y front).
habitat-sim 0.2 draws untextured and vertex-coloured glTF materials at its 10 % ambient level when
no lights are set, so such GLBs are copied with their materials marked ``KHR_materials_unlit``.
Plain JSON/binary work: no habitat-sim import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rendering.atomic import atomic_write_bytes
from rendering.backend import SceneLoadError

# glTF files are +Y up with -Z front; stating it keeps the file's coordinates as world coordinates.
GLTF_UP = (0.0, 1.0, 0.0)
GLTF_FRONT = (0.0, 0.0, -1.0)

ZUP_UP = (0.0, 0.0, 1.0)
ZUP_FRONT = (0.0, 1.0, 0.0)


def stage_config(glb_path: Path, up_axis: str = "y") -> dict[str, Any]:
    """Habitat stage config for a mesh file: ``up_axis="y"`` keeps the file's (glTF, +Y up)
    coordinates as world coordinates; ``"z"`` turns a Z-up file to +Y up."""
    if up_axis not in ("y", "z"):
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    up, front = (GLTF_UP, GLTF_FRONT) if up_axis == "y" else (ZUP_UP, ZUP_FRONT)
    return {"render_asset": str(Path(glb_path).resolve()), "up": list(up), "front": list(front)}


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF is column-major
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = rot * np.asarray(node.get("scale", [1.0, 1.0, 1.0]), dtype=np.float64)
    m[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return m


def read_glb(path: Path) -> tuple[dict[str, Any], bytes]:
    """(JSON document, the bytes after the JSON chunk) of a GLB file; raises SceneLoadError for
    anything that is not a complete binary glTF 2.0 file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SceneLoadError(f"{path}: cannot read the file: {err}") from err
    if len(data) < 20 or data[:4] != b"glTF":
        raise SceneLoadError(f"{path}: not a binary glTF (.glb) file")
    version, total = int.from_bytes(data[4:8], "little"), int.from_bytes(data[8:12], "little")
    chunk_len, chunk_type = int.from_bytes(data[12:16], "little"), data[16:20]
    if version != 2 or chunk_type != b"JSON" or total > len(data) or 20 + chunk_len > len(data):
        raise SceneLoadError(f"{path}: truncated or unsupported GLB (version {version}, {total} bytes declared, {len(data)} present)")
    try:
        doc = json.loads(data[20 : 20 + chunk_len])
    except ValueError as err:
        raise SceneLoadError(f"{path}: the GLB's JSON chunk is corrupt: {err}") from err
    return doc, data[20 + chunk_len :]


def glb_bounds(path: Path, doc: dict[str, Any] | None = None) -> np.ndarray:
    """(2, 3) axis-aligned bounds of a GLB's triangles in file coordinates, read from the JSON chunk
    (glTF requires POSITION min/max), so that a scene can be checked before habitat-sim sees it."""
    if doc is None:
        doc, _ = read_glb(path)
    nodes, meshes, accessors = doc.get("nodes", []), doc.get("meshes", []), doc.get("accessors", [])
    scenes = doc.get("scenes", [])
    if scenes:
        roots = list(scenes[doc.get("scene", 0)].get("nodes", []))
    else:
        children = {c for n in nodes for c in n.get("children", [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    corners = []
    stack = [(i, np.eye(4)) for i in roots]
    while stack:  # iterative walk of the node tree (files may nest deeply)
        index, parent = stack.pop()
        node = nodes[index]
        world = parent @ _node_matrix(node)
        for prim in meshes[node["mesh"]].get("primitives", []) if "mesh" in node else []:
            acc = accessors[prim["attributes"]["POSITION"]]
            if prim.get("mode", 4) not in (4, 5, 6) or "min" not in acc or "max" not in acc:
                continue  # points/lines, or bounds not stated
            lo, hi = np.asarray(acc["min"][:3], float), np.asarray(acc["max"][:3], float)
            box = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            corners.append((box @ world.T)[:, :3])
        stack.extend((c, world) for c in node.get("children", []))
    if not corners:
        raise SceneLoadError(f"{path}: the GLB has no triangle meshes")
    pts = np.concatenate(corners)
    return np.stack([pts.min(axis=0), pts.max(axis=0)])


def needs_unlit_materials(doc: dict[str, Any]) -> bool:
    """Whether some primitive would be shaded by Habitat's Phong path at ambient strength: an
    untextured material, vertex colours or no material, and the material is not marked unlit."""
    materials = doc.get("materials", [])
    for mesh in doc.get("meshes", []):
        for prim in mesh.get("primitives", []):
            index = prim.get("material")
            if index is None:
                return True
            material = materials[index]
            if "KHR_materials_unlit" in material.get("extensions", {}):
                continue
            textured = "baseColorTexture" in material.get("pbrMetallicRoughness", {})
            if not textured or "COLOR_0" in prim.get("attributes", {}):
                return True
    return False


def write_unlit_glb(src: Path, dst: Path) -> None:
    """Copy a GLB with every material marked ``KHR_materials_unlit`` (and a default unlit material
    for primitives without one), so that habitat-sim draws base colour x texture x vertex colour
    without lighting, as the renderer contract asks. Geometry and textures are copied unchanged."""
    doc, rest = read_glb(src)
    materials = doc.setdefault("materials", [])
    for material in materials:
        material.setdefault("extensions", {})["KHR_materials_unlit"] = {}
    default_index = None
    for mesh in doc.get("meshes", []):
        for prim in mesh.get("primitives", []):
            if "material" not in prim:
                if default_index is None:
                    default_index = len(materials)
                    materials.append({"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1]},
                                      "extensions": {"KHR_materials_unlit": {}}})
                prim["material"] = default_index
    used = doc.setdefault("extensionsUsed", [])
    if "KHR_materials_unlit" not in used:
        used.append("KHR_materials_unlit")
    chunk = json.dumps(doc, separators=(",", ":")).encode()
    chunk += b" " * (-len(chunk) % 4)  # chunks are 4-byte aligned, JSON padded with spaces
    total = 12 + 8 + len(chunk) + len(rest)
    header = b"glTF" + (2).to_bytes(4, "little") + total.to_bytes(4, "little")
    atomic_write_bytes(dst, header + len(chunk).to_bytes(4, "little") + b"JSON" + chunk + rest)

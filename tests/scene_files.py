"""Mesh files for the scene tests, made in the test: rooms in any frame, unit and format."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import trimesh
from trimesh.visual import ColorVisuals

from rendering.scenes.mesh_files import up_axis_transform

WALL = 0.1
HEIGHT = 2.6


def _box(lo, hi, colour) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    box = trimesh.creation.box(extents=hi - lo)
    box.apply_translation((lo + hi) / 2)
    box.visual = ColorVisuals(box, face_colors=np.tile(np.array(colour, np.uint8), (len(box.faces), 1)))
    return box


def multi_room() -> trimesh.Scene:
    """An untextured 8 x 8 m flat of 2 x 2 rooms (2.6 m high, doors between them), +Y up, metres,
    one flat colour per part: what an untextured CAD or web model looks like."""
    parts = {
        "floor": _box([0, -0.1, 0], [8, 0, 8], [150, 120, 90, 255]),
        "ceiling": _box([0, HEIGHT, 0], [8, HEIGHT + 0.1, 8], [235, 235, 235, 255]),
    }
    walls = [([0, 0, 0], [8, HEIGHT, WALL]), ([0, 0, 8 - WALL], [8, HEIGHT, 8]),
             ([0, 0, 0], [WALL, HEIGHT, 8]), ([8 - WALL, 0, 0], [8, HEIGHT, 8])]
    # interior walls along x = 4 and z = 4, each with a 1 m wide, 2.1 m high door per room side
    for start, stop in ((0, 1.5), (2.5, 5.5), (6.5, 8)):
        walls.append(([4 - WALL / 2, 0, start], [4 + WALL / 2, HEIGHT, stop]))
        walls.append(([start, 0, 4 - WALL / 2], [stop, HEIGHT, 4 + WALL / 2]))
    for door in (1.5, 5.5):
        walls.append(([4 - WALL / 2, 2.1, door], [4 + WALL / 2, HEIGHT, door + 1]))
        walls.append(([door, 2.1, 4 - WALL / 2], [door + 1, HEIGHT, 4 + WALL / 2]))
    for i, (lo, hi) in enumerate(walls):
        parts[f"wall{i}"] = _box(lo, hi, [200, 200, 190, 255])
    furniture = [([1, 0, 1], [2.2, 0.75, 1.8], [120, 60, 40, 255]), ([5, 0, 1], [7, 0.5, 2], [40, 90, 160, 255]),
                 ([1, 0, 6], [1.6, 1.8, 7.5], [90, 140, 60, 255]), ([5.5, 0, 5.5], [6.5, 0.9, 6.5], [170, 50, 60, 255])]
    for i, (lo, hi, colour) in enumerate(furniture):
        parts[f"furniture{i}"] = _box(lo, hi, colour)
    return trimesh.Scene(parts)


def in_file_frame(scene: trimesh.Scene, up: str = "y", scale: float = 1.0) -> trimesh.Scene:
    """The scene as a file with up axis ``up`` and ``scale`` metres per unit would store it."""
    out = scene.copy()
    out.apply_transform(np.linalg.inv(up_axis_transform(up, scale)))
    return out


def write(scene: trimesh.Scene, path: Path) -> Path:
    """Export in the format of the path's suffix (PLY: one mesh with its face colours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".ply":
        path.write_bytes(trimesh.exchange.ply.export_ply(scene.to_geometry(), encoding="binary"))
    elif path.suffix == ".glb":
        path.write_bytes(trimesh.exchange.gltf.export_glb(scene, include_normals=False))
    else:
        scene.export(path)
    return path


def write_gltf_with_files(scene: trimesh.Scene, folder: Path, name: str = "scene") -> Path:
    """A .gltf with its buffer and its textures as separate files next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = trimesh.exchange.gltf.export_gltf(scene, include_normals=False)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    gltf = folder / f"{name}.gltf"
    doc = json.loads(files["model.gltf"])
    (folder / "model.gltf").unlink()
    buffers = [(folder / b["uri"]).read_bytes() for b in doc["buffers"]]
    for i, image in enumerate(doc.get("images", [])):  # textures as their own files, too
        view = doc["bufferViews"][image.pop("bufferView")]
        start = view.get("byteOffset", 0)
        (folder / f"texture{i}.png").write_bytes(buffers[view["buffer"]][start:start + view["byteLength"]])
        image["uri"] = f"texture{i}.png"
    gltf.write_text(json.dumps(doc))
    return gltf


def draco_glb(scene: trimesh.Scene, path: Path) -> Path:
    """A GLB whose primitives are all Draco-compressed (KHR_draco_mesh_compression), encoded with
    DracoPy, one material (base colour) per geometry, as web exporters write them."""
    import DracoPy

    blob = bytearray()
    doc = {"asset": {"version": "2.0"}, "scenes": [{"nodes": []}], "scene": 0, "nodes": [], "meshes": [],
           "materials": [], "accessors": [], "bufferViews": [],
           "extensionsUsed": ["KHR_draco_mesh_compression"], "extensionsRequired": ["KHR_draco_mesh_compression"]}
    for name, geom in scene.geometry.items():
        colour = np.asarray(geom.visual.face_colors[0], np.float64) / 255.0
        encoded = DracoPy.encode(np.asarray(geom.vertices, np.float32), np.asarray(geom.faces, np.uint32),
                                 quantization_bits=16)
        position_id = DracoPy.decode(encoded).attributes[0]["unique_id"]
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(encoded)})
        blob += encoded + b"\0" * (-len(encoded) % 4)
        # Placeholder accessors (no bufferView), as the extension specifies.
        doc["accessors"] += [
            {"componentType": 5126, "count": len(geom.vertices), "type": "VEC3",
             "min": geom.vertices.min(0).tolist(), "max": geom.vertices.max(0).tolist()},
            {"componentType": 5125, "count": 3 * len(geom.faces), "type": "SCALAR"},
        ]
        doc["materials"].append({"pbrMetallicRoughness": {"baseColorFactor": colour.tolist()}, "name": name})
        doc["meshes"].append({"name": name, "primitives": [{
            "attributes": {"POSITION": len(doc["accessors"]) - 2}, "indices": len(doc["accessors"]) - 1,
            "material": len(doc["materials"]) - 1,
            "extensions": {"KHR_draco_mesh_compression": {"bufferView": len(doc["bufferViews"]) - 1,
                                                          "attributes": {"POSITION": position_id}}}}]})
        doc["nodes"].append({"mesh": len(doc["meshes"]) - 1, "name": name})
        doc["scenes"][0]["nodes"].append(len(doc["nodes"]) - 1)
    doc["buffers"] = [{"byteLength": len(blob)}]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<II", len(text), 0x4E4F534A) + text
                     + struct.pack("<II", len(blob), 0x004E4942) + bytes(blob))
    return path


def lfs_pointer(path: Path) -> Path:
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 48213\n")
    return path

"""glTF/GLB checks and repairs before trimesh reads a file.

trimesh reads plain glTF well, but it silently yields placeholder geometry for Draco-compressed
primitives (``KHR_draco_mesh_compression``), raises bare ``AssertionError``/``IndexError`` for a
missing or short buffer, and ignores KTX2/Basis textures. This module reads the document and its
buffers itself, so each of those cases becomes a one-line :class:`SceneLoadError` naming the file
and the cause, and Draco primitives are decoded (with DracoPy, Google's Draco decoder) into a
plain GLB that trimesh then reads as usual.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from rendering.backend import SceneLoadError

GLB_MAGIC = b"glTF"
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942
DRACO_EXTENSION = "KHR_draco_mesh_compression"
BASISU_EXTENSION = "KHR_texture_basisu"

# glTF accessor component types by numpy dtype
_COMPONENT_TYPES = {np.dtype(np.int8): 5120, np.dtype(np.uint8): 5121, np.dtype(np.int16): 5122,
                    np.dtype(np.uint16): 5123, np.dtype(np.uint32): 5125, np.dtype(np.float32): 5126}
_ACCESSOR_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}


def read_document(path: Path) -> tuple[dict, list[bytes]]:
    """(glTF JSON, the bytes of every buffer) of a ``.glb`` or ``.gltf`` file; errors name the cause."""
    data = path.read_bytes()
    if path.suffix.lower() == ".glb" or data[:4] == GLB_MAGIC:
        doc, bin_chunk = _split_glb(path, data)
    else:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise SceneLoadError(f"{path}: not a glTF file (invalid JSON: {err})") from None
        bin_chunk = None
    if not isinstance(doc, dict):
        raise SceneLoadError(f"{path}: not a glTF file (the JSON is not an object)")
    buffers = [_buffer_bytes(path, i, buffer, bin_chunk) for i, buffer in enumerate(doc.get("buffers", []))]
    return doc, buffers


def _split_glb(path: Path, data: bytes) -> tuple[dict, bytes | None]:
    if data[:4] != GLB_MAGIC:
        raise SceneLoadError(f"{path}: cannot read GLB mesh: not a GLB file (it starts with {data[:16]!r}, not b'glTF')")
    if len(data) < 20:
        raise SceneLoadError(f"{path}: cannot read GLB mesh: truncated file ({len(data)} bytes)")
    _, _, declared = struct.unpack_from("<III", data, 0)
    if declared > len(data):
        raise SceneLoadError(f"{path}: cannot read GLB mesh: truncated file ({len(data)} bytes, its header declares {declared})")
    doc, bin_chunk, offset = None, None, 12
    while offset + 8 <= declared:
        length, kind = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8: offset + 8 + length]
        if len(chunk) < length:
            raise SceneLoadError(f"{path}: cannot read GLB mesh: truncated chunk at byte {offset}")
        if kind == _JSON_CHUNK and doc is None:
            try:
                doc = json.loads(chunk.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as err:
                raise SceneLoadError(f"{path}: GLB JSON chunk is not valid JSON: {err}") from None
        elif kind == _BIN_CHUNK and bin_chunk is None:
            bin_chunk = chunk
        offset += 8 + length + (-length % 4)
    if doc is None:
        raise SceneLoadError(f"{path}: GLB file has no JSON chunk")
    return doc, bin_chunk


def _buffer_bytes(path: Path, index: int, buffer: dict, bin_chunk: bytes | None) -> bytes:
    declared = int(buffer.get("byteLength", 0))
    uri = buffer.get("uri")
    if uri is None:
        if bin_chunk is None:
            raise SceneLoadError(f"{path}: buffer {index} has no uri and the file has no binary chunk")
        data = bin_chunk
        where = "the GLB binary chunk"
    elif uri.startswith("data:"):
        try:
            data = base64.b64decode(uri.split(",", 1)[1])
        except (IndexError, ValueError) as err:
            raise SceneLoadError(f"{path}: buffer {index} has an unreadable data URI: {err}") from None
        where = "its data URI"
    else:
        target = path.parent / unquote(uri)
        if not target.is_file():
            raise SceneLoadError(f"{path}: buffer {index} file {uri!r} is missing (expected at {target})")
        data = target.read_bytes()
        where = f"buffer file {uri!r}"
    if len(data) < declared:
        raise SceneLoadError(f"{path}: buffer {index}: {where} holds {len(data)} bytes, the file declares {declared}")
    return data


def check_textures(path: Path, doc: dict) -> None:
    """Refuse KTX2 / Basis Universal textures, which no loader here decodes, by name."""
    used = set(doc.get("extensionsUsed", [])) | set(doc.get("extensionsRequired", []))
    basis_images = [
        i for i, image in enumerate(doc.get("images", []))
        if image.get("mimeType") == "image/ktx2" or str(image.get("uri", "")).lower().endswith((".ktx2", ".basis"))
    ]
    if BASISU_EXTENSION in used or basis_images:
        which = f"images {basis_images[:5]}" if basis_images else f"textures ({BASISU_EXTENSION})"
        raise SceneLoadError(
            f"{path}: {which} are KTX2/Basis Universal compressed, which the embedded renderer cannot decode; "
            "use the dataset's plain .glb (PNG/JPEG textures) or convert the textures "
            "(e.g. `gltf-transform png in.glb out.glb`), or render with the habitat backend"
        )


def has_draco(doc: dict) -> bool:
    return DRACO_EXTENSION in set(doc.get("extensionsUsed", [])) | set(doc.get("extensionsRequired", []))


def decode_draco_to_glb(path: Path, doc: dict, buffers: list[bytes]) -> bytes:
    """The file as a plain GLB: Draco primitives decoded, all buffers and images in one chunk."""
    try:
        import DracoPy
    except ImportError as err:
        raise SceneLoadError(
            f"{path}: the file is Draco-compressed ({DRACO_EXTENSION}) and DracoPy is not installed "
            f"(pip install DracoPy): {err}"
        ) from None
    doc = json.loads(json.dumps(doc))  # our own copy to rewrite
    blob = bytearray()
    view_offsets = []
    for data in buffers:
        view_offsets.append(len(blob))
        blob += data
        blob += b"\0" * (-len(blob) % 4)
    for view in doc.get("bufferViews", []):
        view["byteOffset"] = view_offsets[view.get("buffer", 0)] + int(view.get("byteOffset", 0))
        view["buffer"] = 0
    views, accessors = doc.setdefault("bufferViews", []), doc.setdefault("accessors", [])

    def add_array(array: np.ndarray, target: int | None, normalized: bool = False) -> int:
        array = np.ascontiguousarray(array)
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": array.nbytes}
        if target is not None:
            view["target"] = target
        blob.extend(array.tobytes())
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(view)
        components = 1 if array.ndim == 1 else array.shape[1]
        accessor = {"bufferView": len(views) - 1, "componentType": _COMPONENT_TYPES[array.dtype],
                    "count": int(array.shape[0]), "type": _ACCESSOR_TYPES[components]}
        if normalized:
            accessor["normalized"] = True
        if array.dtype.kind == "f" and array.size:
            accessor["min"] = np.atleast_1d(array.min(axis=0)).astype(float).tolist()
            accessor["max"] = np.atleast_1d(array.max(axis=0)).astype(float).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    for m_index, mesh in enumerate(doc.get("meshes", [])):
        for p_index, primitive in enumerate(mesh.get("primitives", [])):
            ext = primitive.get("extensions", {}).get(DRACO_EXTENSION)
            if ext is None:
                continue
            where = f"mesh {m_index} primitive {p_index}"
            try:
                view = doc["bufferViews"][ext["bufferView"]]
                start = int(view.get("byteOffset", 0))
                decoded = DracoPy.decode(bytes(blob[start:start + int(view["byteLength"])]))
            except Exception as err:  # DracoPy raises its own and ValueError types for bad bytes
                raise SceneLoadError(f"{path}: {where}: cannot decode its Draco data: {type(err).__name__}: {err}") from None
            attributes = {}
            for name, unique_id in ext.get("attributes", {}).items():
                attr = decoded.get_attribute_by_unique_id(int(unique_id))
                if attr is None:
                    raise SceneLoadError(f"{path}: {where}: Draco data has no attribute {unique_id} ({name})")
                values = np.asarray(attr["data"])
                if values.ndim == 1:
                    values = values[:, None]
                if name == "POSITION" or name.startswith(("NORMAL", "TANGENT")) or values.dtype.kind == "f":
                    values = values.astype(np.float32)
                normalized = values.dtype.kind in "ui" and name.startswith(("COLOR_", "TEXCOORD_"))
                attributes[name] = add_array(values, 34962, normalized)
            if "POSITION" not in attributes:
                raise SceneLoadError(f"{path}: {where}: Draco data has no POSITION attribute")
            primitive["attributes"] = attributes  # uncompressed extras would have another vertex count
            faces = np.asarray(decoded.faces, dtype=np.uint32).reshape(-1)
            primitive["indices"] = add_array(faces, 34963)
            del primitive["extensions"][DRACO_EXTENSION]
            if not primitive["extensions"]:
                del primitive["extensions"]
    for image in doc.get("images", []):
        uri = image.get("uri")
        if uri is None:
            continue
        if uri.startswith("data:"):
            raw = base64.b64decode(uri.split(",", 1)[1])
        else:
            target = path.parent / unquote(uri)
            if not target.is_file():
                raise SceneLoadError(f"{path}: texture image file {uri!r} is missing (expected at {target})")
            raw = target.read_bytes()
        mime = "image/png" if raw[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw)}
        blob.extend(raw)
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(view)
        image.pop("uri")
        image["bufferView"] = len(views) - 1
        image.setdefault("mimeType", mime)
    for key in ("extensionsUsed", "extensionsRequired"):
        if key in doc:
            doc[key] = [e for e in doc[key] if e != DRACO_EXTENSION]
            if not doc[key]:
                del doc[key]
    doc["buffers"] = [{"byteLength": len(blob)}]
    return _glb_bytes(doc, bytes(blob))


def _glb_bytes(doc: dict, blob: bytes) -> bytes:
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    return (struct.pack("<4sII", GLB_MAGIC, 2, total) + struct.pack("<II", len(text), _JSON_CHUNK) + text
            + struct.pack("<II", len(blob), _BIN_CHUNK) + blob)

"""Scene dataset discovery: turn a dataset root the user already has into a stable list of scenes.

We never download datasets (their licences need the user's own agreement). Given a root folder
and the dataset kind, :func:`discover_scenes` lists the scene meshes in the layout that dataset
ships with, and gives every scene a stable id: ``<kind prefix>-<slug>`` with only ``[A-Za-z0-9_-]``
(no dots, so ids are valid WebDataset key prefixes). The same root always yields the same ids in
the same order, and :func:`split_by_scene` assigns scenes to train/val from the id alone, so a
scene never changes split when others are added or removed.

Layouts (as distributed for habitat-sim; a root may be the dataset folder or one split folder):

* ``hm3d``: ``<root>/{train,val,minival}/<NNNNN-sceneId>/<sceneId>.basis.glb`` (``.basis.glb``
  preferred over ``.glb``; ``*.semantic.glb`` skipped).
* ``scannet``: ``<root>/**/<scene>.glb`` (scene id from the ``sceneXXXX_YY`` part of the path).
* ``gibson``: ``<root>/<Name>.glb``.
* ``mp3d``: ``<root>/<scene>/<scene>.glb``.
* ``replicacad``: ReplicaCAD baked lighting, ``<root>/stages/Baked_sc*_staging_*.glb``.
* ``habitat_test_scenes``: ``<root>/*.glb`` (apartment_1, skokloster-castle, van-gogh-room).
* ``glb``: any ``*.glb`` / ``*.gltf`` below ``<root>``.
* ``meshes``: any ``*.glb`` / ``*.gltf`` / ``*.obj`` / ``*.ply`` below ``<root>`` (scans, CAD and web
  exports); set the corpus entry's ``up`` (and ``scale``) when the files are not +Y up in metres.

Coordinate frames: Matterport-style datasets (hm3d, mp3d, gibson, scannet, habitat_test_scenes)
store Z-up meshes and their navmeshes and poses (CroCo's metadata included) live in Habitat's
Y-up world; ReplicaCAD, plain glTF files and ``meshes`` are taken as Y-up. :data:`DATASET_UP_AXIS` records
this, and every discovered ``SceneSpec`` carries it as ``up_axis``, so any backend loads the scene
in that Y-up world and one corpus can mix Y-up and Z-up datasets.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from rendering.backend import SceneSpec
from rendering.scene_uri import id_slug

DATASET_KINDS = ("hm3d", "scannet", "gibson", "mp3d", "replicacad", "habitat_test_scenes", "glb", "meshes")

# id prefixes: short, fixed, never change (ids are stored in manifests)
_PREFIX = {
    "hm3d": "hm3d",
    "scannet": "scannet",
    "gibson": "gibson",
    "mp3d": "mp3d",
    "replicacad": "replicacad",
    "habitat_test_scenes": "habtest",
    "glb": "glb",
    "meshes": "mesh",
}

# "y": the file is glTF-conformant (+Y up); "z": a Z-up Matterport-style mesh
DATASET_UP_AXIS: dict[str, Literal["y", "z"]] = {
    "hm3d": "z",
    "scannet": "z",
    "gibson": "z",
    "mp3d": "z",
    "replicacad": "y",
    "habitat_test_scenes": "z",
    "glb": "y",
    "meshes": "y",
}

HM3D_SPLITS = ("train", "val", "minival")


class DatasetError(ValueError):
    """A dataset root is missing, of an unknown kind, or holds no scene in the expected layout."""


@dataclass(frozen=True)
class DiscoveredScene:
    """One scene of a dataset: what to render (its spec states the up axis), plus facts the
    corpus manifest records."""

    spec: SceneSpec
    dataset: str
    split: str | None  # the dataset's own split (HM3D), else None
    navmesh: Path | None  # a navmesh shipped next to the mesh, if any

    @property
    def up_axis(self) -> str:
        """The spec's up axis (see DATASET_UP_AXIS); kept here only as a shorthand."""
        return self.spec.up_axis


def slugify(text: str) -> str:
    """A dataset scene name as an id fragment (rendering.scene_uri.id_slug, case kept)."""
    try:
        return id_slug(text, keep_case=True)
    except ValueError as err:
        raise DatasetError(str(err)) from None


def _is_semantic(path: Path) -> bool:
    return ".semantic." in path.name or path.stem.endswith("_semantic")


def _mesh_stem(path: Path) -> str:
    name = path.name
    for suffix in (".basis.glb", ".glb", ".gltf"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _navmesh_next_to(mesh: Path) -> Path | None:
    stem = _mesh_stem(mesh)
    for name in (f"{stem}.basis.navmesh", f"{stem}.navmesh"):
        if (mesh.parent / name).is_file():
            return mesh.parent / name
    return None


GLTF_SUFFIXES = (".glb", ".gltf")
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")


def _meshes(folder: Path, recursive: bool, suffixes: tuple[str, ...] = GLTF_SUFFIXES) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if p.is_file() and p.name.lower().endswith(suffixes) and not _is_semantic(p)
    )


def _prefer_basis(meshes: list[Path]) -> Path | None:
    """HM3D ships ``x.basis.glb`` (compressed textures, what Habitat loads) and sometimes ``x.glb``."""
    basis = [m for m in meshes if m.name.endswith(".basis.glb")]
    return (basis or meshes or [None])[0]


def _hm3d(root: Path) -> list[tuple[str, Path, str | None]]:
    split_dirs = [(s, root / s) for s in HM3D_SPLITS if (root / s).is_dir()]
    if not split_dirs:  # the root is one split folder itself
        split_dirs = [(root.name if root.name in HM3D_SPLITS else None, root)]
    found = []
    for split, folder in split_dirs:
        for scene_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            mesh = _prefer_basis(_meshes(scene_dir, recursive=False))
            if mesh is not None:
                found.append((scene_dir.name, mesh, split))
    return found


def _scannet(root: Path) -> list[tuple[str, Path, str | None]]:
    found = []
    for mesh in _meshes(root, recursive=True):
        match = re.search(r"scene\d{4}_\d{2}", str(mesh.relative_to(root)))
        found.append((match.group(0) if match else _mesh_stem(mesh), mesh, None))
    return found


def _gibson(root: Path) -> list[tuple[str, Path, str | None]]:
    return [(_mesh_stem(m), m, None) for m in _meshes(root, recursive=False)]


def _mp3d(root: Path) -> list[tuple[str, Path, str | None]]:
    found = []
    for scene_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        mesh = scene_dir / f"{scene_dir.name}.glb"
        if mesh.is_file():
            found.append((scene_dir.name, mesh, None))
    return found


def _replicacad(root: Path) -> list[tuple[str, Path, str | None]]:
    stages = root / "stages" if (root / "stages").is_dir() else root
    return [(_mesh_stem(m), m, None) for m in _meshes(stages, recursive=False) if m.name.startswith("Baked_")]


def _plain(root: Path, suffixes: tuple[str, ...] = GLTF_SUFFIXES) -> list[tuple[str, Path, str | None]]:
    found = []
    for mesh in _meshes(root, recursive=True, suffixes=suffixes):
        rel = mesh.relative_to(root)
        found.append(("/".join([*rel.parts[:-1], _mesh_stem(mesh)]), mesh, None))
    return found


def _any_mesh(root: Path) -> list[tuple[str, Path, str | None]]:
    """Every mesh file; ``room.obj`` and ``room.ply`` side by side get ids ``room-obj``, ``room-ply``."""
    found = _plain(root, MESH_SUFFIXES)
    names = [name for name, _, _ in found]
    return [(f"{name}-{mesh.suffix[1:].lower()}" if names.count(name) > 1 else name, mesh, split)
            for name, mesh, split in found]


_LAYOUTS: dict[str, Callable[[Path], list[tuple[str, Path, str | None]]]] = {
    "hm3d": _hm3d,
    "scannet": _scannet,
    "gibson": _gibson,
    "mp3d": _mp3d,
    "replicacad": _replicacad,
    "habitat_test_scenes": _gibson,  # a flat folder of .glb files, like Gibson
    "glb": _plain,
    "meshes": _any_mesh,
}


def discover(kind: str, root: str | Path) -> list[DiscoveredScene]:
    """All scenes of dataset ``kind`` under ``root``, sorted by id; raises :class:`DatasetError`
    for an unknown kind, a missing root, an empty dataset or two scenes with the same id."""
    if kind not in _LAYOUTS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(DATASET_KINDS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{kind} dataset root {root} does not exist or is not a folder")
    scenes: dict[str, DiscoveredScene] = {}
    for name, mesh, split in _LAYOUTS[kind](root):
        scene_id = f"{_PREFIX[kind]}-{slugify(name)}"
        if scene_id in scenes:
            raise DatasetError(
                f"{kind} dataset root {root}: scenes {scenes[scene_id].spec.uri} and {mesh} both map to id {scene_id!r}"
            )
        scenes[scene_id] = DiscoveredScene(
            spec=SceneSpec(scene_id=scene_id, uri=str(mesh.resolve()), up_axis=DATASET_UP_AXIS[kind]),
            dataset=kind,
            split=split,
            navmesh=_navmesh_next_to(mesh),
        )
    if not scenes:
        raise DatasetError(f"no {kind} scenes found under {root} (expected layout: see rendering.scene_datasets)")
    return [scenes[k] for k in sorted(scenes)]


def discover_scenes(kind: str, root: str | Path) -> list[SceneSpec]:
    """Scene specs of dataset ``kind`` under ``root``, sorted by their stable ids, each with the
    kind's up axis."""
    return [scene.spec for scene in discover(kind, root)]


def scene_split(scene_id: str, val_fraction: float, salt: str = "") -> str:
    """``"val"`` or ``"train"`` for one scene, from a hash of its id alone (stable under adding or
    removing other scenes)."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    digest = hashlib.sha256(f"{salt}|{scene_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "val" if u < val_fraction else "train"


def split_by_scene(
    scenes: list[SceneSpec], val_fraction: float, salt: str = "", min_val: int = 1
) -> dict[str, list[SceneSpec]]:
    """Train/val split by scene (never by pair), stable per scene id.

    With two or more scenes and ``val_fraction > 0``, at least ``min_val`` scenes go to val and at
    least one stays in train: the scenes with the smallest hash values are moved, so the choice is
    still a function of the ids.
    """
    ids = [s.scene_id for s in scenes]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate scene ids: {', '.join(dupes)}")
    out: dict[str, list[SceneSpec]] = {"train": [], "val": []}
    for scene in scenes:
        out[scene_split(scene.scene_id, val_fraction, salt)].append(scene)
    if len(scenes) >= 2 and val_fraction > 0:
        rank = sorted(scenes, key=lambda s: hashlib.sha256(f"{salt}|{s.scene_id}".encode()).digest())
        want_val = min(max(min_val, len(out["val"])), len(scenes) - 1)
        if len(out["val"]) < want_val or not out["train"]:
            val_ids = {s.scene_id for s in rank[:want_val]}
            out = {
                "train": [s for s in scenes if s.scene_id not in val_ids],
                "val": [s for s in scenes if s.scene_id in val_ids],
            }
    return out


def habitat_stage_config(scene: DiscoveredScene) -> dict[str, object]:
    """Habitat stage config that loads ``scene`` in Habitat's Y-up world frame (its navmesh's and
    CroCo's metadata's frame): Z-up datasets say so, glTF ones keep their own axes."""
    up, front = ([0.0, 0.0, 1.0], [0.0, 1.0, 0.0]) if scene.up_axis == "z" else ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0])
    return {"render_asset": scene.spec.uri, "up": up, "front": front}

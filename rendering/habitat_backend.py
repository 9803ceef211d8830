"""The ``habitat`` renderer backend: habitat-sim behind the same contract as the embedded renderer.

Habitat is the simulator CroCo's corpora were rendered with. This backend lets users who have
habitat-sim and the scene datasets render (and re-render) corpora with it through the same flows.
It is the only module of the project that imports ``habitat_sim``, and it does so when a renderer
is created, so importing this module alone never needs habitat-sim.

How it maps our contract onto Habitat (habitat-sim 0.2.x):

* One ``habitat_sim.Simulator`` per renderer (create one renderer per worker process). Changing
  scene, resolution or field of view goes through ``Simulator.reconfigure``: the simulator and its
  GL context are kept, because destroying and re-creating simulators leaks GPU memory.
* One agent per camera configuration in use (resolution, FOV; up to MAX_CAMERAS), each carrying
  an RGB and a DEPTH pinhole camera at zero offset from its body; a pose is set by putting the
  body where the camera is, converted by :mod:`rendering.habitat_frame` only.
* Habitat's pinhole camera knows a horizontal FOV and square pixels with the principal point at
  the image centre, so intrinsics ``K`` are checked for that and turned into ``hfov``.
* Habitat's DEPTH sensor already gives z-depth in metres with 0 where nothing was hit (checked by
  the tests); values outside (0, far] are set to 0 all the same.
* A GLB is loaded as a *stage* through a stage config that states the glTF convention (+Y up,
  -Z front), because habitat-sim treats a bare ``.glb`` as a Z-up Matterport mesh; for a scene
  spec with ``up_axis="z"`` it states the Z-up convention instead (HM3D, MP3D, ... whose specs
  rendering.datasets builds that way). A URI that already is a ``*.stage_config.json`` is used as
  it is (it states its own frame). Other mesh formats and procedural scenes go through
  ``rendering.scenes.scene_glb_path``.
* Unlit albedo, as the contract asks: habitat-sim 0.2 draws textured glTF materials at full
  strength but untextured and vertex-coloured ones at its 10 % ambient level when no lights are
  set, so such GLBs are copied with their materials marked ``KHR_materials_unlit``.
* habitat-sim crashes (segfault) building a navmesh for a scene with no horizontal extent, so the
  GLB's bounds are read from its JSON first and such scenes raise SceneLoadError.
* The navigable space is Habitat's navmesh: the scene's ``.navmesh`` file when there is one,
  otherwise one recomputed with explicit :class:`NavMeshOptions`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rendering.backend import NavigableSpace, RenderedView, SceneLoadError, SceneSpec
from rendering.camera import check_intrinsics, check_pose
from rendering.habitat_frame import opencv_pose_to_habitat_state
from rendering.atomic import atomic_write_bytes
from rendering.scene_uri import is_procedural, mesh_path

INSTALL_HELP = """\
habitat-sim is not installed (or fails to import) in this Python environment.
It has no PyPI wheel for Linux; install it one of these ways:
  * conda (official channel, headless build for servers without a display):
        conda install habitat-sim withbullet headless -c conda-forge -c aihabitat
    (or without physics: conda install habitat-sim headless -c conda-forge -c aihabitat),
    then `pip install -e .` of this project into the same conda environment;
  * without conda: build it from source (git clone https://github.com/facebookresearch/habitat-sim,
    then `pip install . --config-settings=--build-option=--headless` or `python setup.py install
    --headless`; needs CMake, a C++ compiler and EGL/GL development headers);
  * or keep the default `backend = "embedded"`, which needs nothing beyond this package.
Headless rendering needs an EGL driver: Mesa (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)
on a CPU-only machine, the NVIDIA driver on a GPU host."""


class HabitatUnavailableError(ImportError):
    """habitat_sim cannot be imported; the message says how to install it."""


def import_habitat_sim() -> Any:
    """Import habitat_sim, or raise :class:`HabitatUnavailableError` with install instructions."""
    try:
        import habitat_sim
    except ImportError as err:
        raise HabitatUnavailableError(f"{INSTALL_HELP}\n(import error: {err})") from err
    return habitat_sim


# cameras (resolution, FOV) kept configured at once; one more resets the set
MAX_CAMERAS = 4

# glTF files are +Y up with -Z front; stating it keeps the file's coordinates as world coordinates.
GLTF_UP = (0.0, 1.0, 0.0)
GLTF_FRONT = (0.0, 0.0, -1.0)


@dataclass(frozen=True)
class NavMeshOptions:
    """Recast settings for recomputing a navmesh (metres, degrees).

    Recast puts the navmesh up to one cell height above the floor; the cells here are finer in
    height than Habitat's defaults (0.05 m x 0.2 m) so that navmesh points lie within 1 cm of the
    floor, since the sampler puts cameras at a height above these points.
    """

    agent_height: float = 1.5
    agent_radius: float = 0.1
    agent_max_climb: float = 0.2
    agent_max_slope: float = 45.0
    cell_size: float = 0.05
    cell_height: float = 0.01

    def __post_init__(self) -> None:
        for name in ("agent_height", "agent_radius", "agent_max_climb", "cell_size", "cell_height"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"NavMeshOptions.{name} must be a positive finite number, got {value!r}")
        if not 0.0 < self.agent_max_slope < 90.0:
            raise ValueError(f"NavMeshOptions.agent_max_slope must be in (0, 90) degrees, got {self.agent_max_slope}")


def hfov_from_intrinsics(K: np.ndarray, width: int, height: int) -> float:
    """Horizontal FOV in degrees for ``K``; rejects what Habitat's pinhole camera cannot express.

    Habitat's camera has square pixels, no skew and its principal point at the image centre.
    """
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer)) and width > 0 and height > 0):
        raise ValueError(f"image size must be positive integers, got {width}x{height}")
    k = check_intrinsics(K, "K (habitat backend)", allow_skew=False)
    fx, fy = k[0, 0], k[1, 1]
    if abs(fx - fy) > 1e-6 * fx:
        raise ValueError(
            f"K: the habitat backend renders square pixels only (fx == fy), got fx={fx}, fy={fy}"
        )
    if abs(k[0, 2] - width / 2.0) > 1e-6 * width or abs(k[1, 2] - height / 2.0) > 1e-6 * height:
        raise ValueError(
            f"K: the habitat backend needs the principal point at the image centre "
            f"({width / 2.0}, {height / 2.0}) for a {width}x{height} image, got ({k[0, 2]}, {k[1, 2]})"
        )
    return math.degrees(2.0 * math.atan((width / 2.0) / fx))


# Matterport-style Z-up meshes (HM3D, MP3D, Gibson, ...): file (x, y, z) -> world (x, z, -y),
# the same rotation as rendering.scenes' up_axis="z"
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


def navmesh_file_for(asset: Path) -> Path | None:
    """The navmesh stored next to a scene asset, if any.

    ``x.glb`` -> ``x.navmesh``; HM3D's ``x.basis.glb`` -> ``x.basis.navmesh`` (or ``x.navmesh``);
    ``x.stage_config.json`` -> ``x.navmesh``.
    """
    asset = Path(asset)
    name = asset.name
    stems = []
    for suffix in (".stage_config.json", ".basis.glb", ".glb", ".gltf"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            if suffix == ".basis.glb":
                stems.append(stem + ".basis")
            stems.append(stem)
            break
    for stem in stems:
        candidate = asset.with_name(stem + ".navmesh")
        if candidate.is_file():
            return candidate
    return None


def default_gpu_device_id() -> int:
    """0 where an NVIDIA GPU is visible, else -1 (Habitat's CPU/EGL-only setting)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()) and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "":
        return 0
    return -1


class _EglBinding:
    """The EGL display/surfaces/context that were current at capture, to make current again.

    habitat-sim 0.2 binds only ``acquire_gl_context``, which does nothing while it believes it
    owns the context; when another GL user in the process (e.g. the embedded renderer) has made
    its own context current, Habitat would draw into that one.
    """

    def __init__(self, lib: Any, display: int, draw: int, read: int, context: int) -> None:
        self._lib, self._args = lib, (display, draw, read, context)

    @classmethod
    def capture_current(cls) -> _EglBinding | None:
        import ctypes

        try:
            lib = ctypes.CDLL("libEGL.so.1")
        except OSError:
            return None  # not an EGL build (e.g. a desktop GLX build): nothing to restore
        for name in ("eglGetCurrentDisplay", "eglGetCurrentContext", "eglGetCurrentSurface"):
            getattr(lib, name).restype = ctypes.c_void_p
        lib.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
        lib.eglMakeCurrent.restype = ctypes.c_uint
        egl_draw, egl_read = 0x3059, 0x305A
        context = lib.eglGetCurrentContext()
        if not context:
            return None
        return cls(lib, lib.eglGetCurrentDisplay(), lib.eglGetCurrentSurface(egl_draw), lib.eglGetCurrentSurface(egl_read), context)

    def make_current(self) -> None:
        if not self._lib.eglMakeCurrent(*self._args):
            raise RuntimeError("could not make habitat-sim's EGL context current again")


class HabitatNavigable:
    """NavigableSpace backed by Habitat's PathFinder (the loaded scene's navmesh)."""

    def __init__(self, pathfinder: Any, scene_id: str) -> None:
        self._pf = pathfinder
        self.scene_id = scene_id
        self.area_m2 = float(pathfinder.navigable_area)
        self._vertices: np.ndarray | None = None

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        """A random navigable point (Detour's area-weighted sampling), seeded from ``rng``."""
        self._pf.seed(int(rng.integers(0, 2**31 - 1)))
        for _ in range(10):  # Detour can fail on degenerate polygons: retry a bounded number of times
            point = np.asarray(self._pf.get_random_navigable_point(), dtype=np.float64)
            if point.shape == (3,) and np.all(np.isfinite(point)):
                return point
        raise SceneLoadError(f"scene {self.scene_id!r}: the navmesh returned no random navigable point")

    def snap_point(self, point: np.ndarray) -> np.ndarray:
        """Nearest navmesh point; far from the navmesh (beyond Detour's search box), the navmesh
        vertex nearest horizontally, snapped."""
        p = np.asarray(point, dtype=np.float64)
        if p.shape != (3,):
            raise ValueError(f"snap_point expects a (3,) point, got shape {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("snap_point: point contains NaN or infinite values")
        snapped = np.asarray(self._pf.snap_point(p.astype(np.float32)), dtype=np.float64)
        if np.all(np.isfinite(snapped)):
            return snapped
        if self._vertices is None:
            self._vertices = np.asarray(self._pf.build_navmesh_vertices(), dtype=np.float64).reshape(-1, 3)
        if len(self._vertices) == 0:
            raise SceneLoadError(f"scene {self.scene_id!r}: the navmesh has no vertices")
        nearest = self._vertices[np.argmin(np.sum((self._vertices[:, [0, 2]] - p[[0, 2]]) ** 2, axis=1))]
        snapped = np.asarray(self._pf.snap_point(nearest.astype(np.float32)), dtype=np.float64)
        return snapped if np.all(np.isfinite(snapped)) else nearest

    def is_navigable(self, point: np.ndarray) -> bool:
        return bool(self._pf.is_navigable(np.asarray(point, dtype=np.float32)))

    def __repr__(self) -> str:
        return f"HabitatNavigable(scene={self.scene_id!r}, area={self.area_m2:.2f} m2)"


class HabitatRenderer:
    """habitat-sim renderer fulfilling :class:`rendering.backend.Renderer`.

    ``device_index`` is Habitat's ``gpu_device_id`` (``None``: 0 where an NVIDIA GPU is visible,
    else -1, which selects EGL without CUDA). ``near``/``far`` are the camera clip planes (the
    embedded renderer's defaults, so both backends drop the same too-close surfaces).
    The ``agent_*`` and ``navmesh_cell_*`` options are the :class:`NavMeshOptions` used when a
    scene has no navmesh file. habitat-sim keeps every stage it has loaded in memory;
    ``recreate_after_scenes=N`` (0: never) closes and re-creates the simulator before an
    (N+1)-th distinct scene, trading that growth for a re-creation (which itself may leak some GPU
    memory on some drivers). A scene's frame comes from its spec only: ``SceneSpec.up_axis="z"``
    loads a mesh file as Z-up (Matterport-style datasets, see rendering.datasets), giving the same
    world frame as the embedded renderer and as the datasets' navmeshes and CroCo's released poses.
    ``up_axis`` is not a constructor option (one renderer serves Y-up and Z-up scenes alike);
    passing it raises ValueError.
    """

    name = "habitat"

    def __init__(
        self,
        device_index: int | None = None,
        near: float = 0.05,
        far: float = 100.0,
        cache_dir: str | Path | None = None,
        up_axis: object = None,
        agent_height: float = NavMeshOptions.agent_height,
        agent_radius: float = NavMeshOptions.agent_radius,
        agent_max_climb: float = NavMeshOptions.agent_max_climb,
        agent_max_slope: float = NavMeshOptions.agent_max_slope,
        navmesh_cell_size: float = NavMeshOptions.cell_size,
        navmesh_cell_height: float = NavMeshOptions.cell_height,
        recreate_after_scenes: int = 0,
    ) -> None:
        if up_axis is not None:
            # a config may still carry the old backend option: say where the setting lives now
            raise ValueError(
                f"up_axis={up_axis!r} is not a habitat backend option: a scene's up axis is "
                "SceneSpec.up_axis (set per dataset kind by rendering.datasets)"
            )
        if not (np.isfinite(near) and np.isfinite(far) and 0.0 < near < far):
            raise ValueError(f"near/far planes must satisfy 0 < near < far, got near={near}, far={far}")
        if device_index is not None and (not isinstance(device_index, int) or device_index < -1):
            raise ValueError(f"device_index must be an int >= -1 or None, got {device_index!r}")
        self._hs = import_habitat_sim()
        import quaternion  # numpy-quaternion, a habitat-sim dependency: Habitat's (w, x, y, z) type

        self._quaternion = quaternion
        self.near = float(near)
        self.far = float(far)
        self.navmesh_options = NavMeshOptions(  # flat keywords: config backend_options are flat
            agent_height=agent_height,
            agent_radius=agent_radius,
            agent_max_climb=agent_max_climb,
            agent_max_slope=agent_max_slope,
            cell_size=navmesh_cell_size,
            cell_height=navmesh_cell_height,
        )
        if not isinstance(recreate_after_scenes, int) or recreate_after_scenes < 0:
            raise ValueError(f"recreate_after_scenes must be an int >= 0, got {recreate_after_scenes!r}")
        self.recreate_after_scenes = recreate_after_scenes
        self._scenes_in_simulator: set[str] = set()
        self.gpu_device_id = default_gpu_device_id() if device_index is None else device_index
        if self.gpu_device_id < 0:
            # habitat-sim builds that pick the EGL device by CUDA device need this without CUDA
            os.environ.setdefault("HSIM_DISABLE_CUDA_DEVICE", "1")
        self._workdir = Path(tempfile.mkdtemp(prefix="crocopipe-habitat-"))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self._workdir / "scenes"
        self._sim: Any = None
        self._egl: _EglBinding | None = None
        self._scene: SceneSpec | None = None
        self._stage_id: str | None = None
        # one agent per camera (width, height, hfov) in use, so that alternating resolutions (the
        # sampler's small screening renders) switch agents instead of reconfiguring
        self._cameras: list[tuple[int, int, float]] = []
        self.reconfigure_count = 0
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._sim is not None:
            self._make_current()  # its resources live in its context, not in whatever is current
            self._sim.close(destroy=True)
            self._sim = None
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> HabitatRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("HabitatRenderer is closed")

    # -- configuration -----------------------------------------------------------------------
    def _sim_config(self, stage_id: str) -> Any:
        cfg = self._hs.SimulatorConfiguration()
        cfg.scene_id = stage_id
        cfg.gpu_device_id = self.gpu_device_id
        cfg.enable_physics = False
        cfg.create_renderer = True
        cfg.random_seed = 0
        return cfg

    @staticmethod
    def _sensor_uuids(width: int, height: int, hfov: float) -> tuple[str, str]:
        """Sensor names that encode the camera: habitat-sim's ``Simulator.reconfigure`` skips a
        configuration whose sensor specs compare equal, and specs compare by name and type only."""
        tag = f"{width}x{height}_{hfov:.9f}"
        return f"rgb_{tag}", f"depth_{tag}"

    def _agent_config(self, width: int, height: int, hfov: float) -> Any:
        hs = self._hs
        specs = []
        rgb_uuid, depth_uuid = self._sensor_uuids(width, height, hfov)
        for uuid, kind in ((rgb_uuid, hs.SensorType.COLOR), (depth_uuid, hs.SensorType.DEPTH)):
            spec = hs.CameraSensorSpec()
            spec.uuid = uuid
            spec.sensor_type = kind
            spec.sensor_subtype = hs.SensorSubType.PINHOLE
            spec.resolution = [height, width]  # Habitat: [rows, columns]
            spec.position = [0.0, 0.0, 0.0]  # the camera *is* the agent body
            spec.orientation = [0.0, 0.0, 0.0]
            spec.hfov = hfov
            spec.near = self.near
            spec.far = self.far
            specs.append(spec)
        agent = hs.agent.AgentConfiguration()
        agent.height = self.navmesh_options.agent_height
        agent.radius = self.navmesh_options.agent_radius
        agent.sensor_specifications = specs
        return agent

    def _make_current(self) -> None:
        """Habitat draws with whatever GL context is current; another renderer in this process
        (e.g. the embedded one, for cross-checks) may have made its own current since."""
        if self._egl is not None:
            self._egl.make_current()

    def _configure(self, stage_id: str, cameras: list[tuple[int, int, float]]) -> None:
        agents = [self._agent_config(*camera) for camera in cameras]
        config = self._hs.Configuration(self._sim_config(stage_id), agents)
        if self._sim is None:
            self._sim = self._hs.Simulator(config)
            self._egl = _EglBinding.capture_current()  # the context habitat just created
        else:
            self._make_current()
            self._sim.reconfigure(config)
            self.reconfigure_count += 1
        self._stage_id = stage_id
        self._cameras = list(cameras)

    def _agent_for(self, camera: tuple[int, int, float]) -> int:
        """Index of the agent carrying ``camera``'s sensors, adding one (a reconfigure) if new."""
        for index, known in enumerate(self._cameras):
            if known[:2] == camera[:2] and abs(known[2] - camera[2]) <= 1e-9:
                return index
        cameras = self._cameras + [camera] if len(self._cameras) < MAX_CAMERAS else [camera]
        self._configure(self._stage_id, cameras)
        return len(cameras) - 1

    # -- scenes --------------------------------------------------------------------------------
    def _stage_for(self, scene: SceneSpec) -> tuple[str, Path]:
        """(scene_id for Habitat, the asset whose navmesh file counts) for a scene spec."""
        uri = scene.uri
        if uri.endswith(".stage_config.json"):
            path = Path(uri)
            if not path.is_file():
                raise SceneLoadError(f"scene {scene.scene_id!r}: stage config {uri} does not exist")
            return str(path.resolve()), path
        up_axis = scene.up_axis
        if uri.lower().endswith(".glb") and not is_procedural(uri):
            glb = mesh_path(uri).expanduser()
        else:
            from rendering.scenes import scene_glb_path  # procedural scenes and other mesh formats

            glb = Path(scene_glb_path(scene, self.cache_dir))  # written +Y up
            up_axis = "y"
        if not glb.is_file():
            raise SceneLoadError(f"scene {scene.scene_id!r}: mesh file {glb} does not exist")
        if glb.stat().st_size == 0:
            raise SceneLoadError(f"scene {scene.scene_id!r}: mesh file {glb} is empty")
        doc, _ = read_glb(glb)
        bounds = glb_bounds(glb, doc)
        extent = bounds[1] - bounds[0]
        horizontal = extent[[0, 2]] if up_axis == "y" else extent[[0, 1]]
        if np.any(horizontal < 2 * self.navmesh_options.cell_size):
            # habitat-sim 0.2 crashes (segfault) building a navmesh for a scene without floor extent
            raise SceneLoadError(
                f"scene {scene.scene_id!r}: {glb} spans {horizontal.round(3).tolist()} m horizontally: "
                "no floor to stand on"
            )
        key = hashlib.sha256(f"{glb.resolve()}|{glb.stat().st_mtime_ns}|{up_axis}".encode()).hexdigest()[:16]
        stage = self._workdir / f"{key}.stage_config.json"
        if not stage.exists():
            render_asset = glb
            external = any("uri" in item and not str(item["uri"]).startswith("data:")
                           for item in doc.get("images", []) + doc.get("buffers", []))
            # Habitat would light these at ambient (10 %) strength; a copy elsewhere would lose
            # files the GLB refers to by relative path, so those are left as they are
            if needs_unlit_materials(doc) and not external:
                render_asset = self._workdir / f"{key}.unlit.glb"
                write_unlit_glb(glb, render_asset)
            stage.write_text(json.dumps(stage_config(render_asset, up_axis), indent=2))
        return str(stage), glb

    def load_scene(self, scene: SceneSpec) -> NavigableSpace:
        """Make ``scene`` the simulator's stage (reconfiguring the one simulator) and return its navmesh."""
        self._check_open()
        stage_id, asset = self._stage_for(scene)
        cameras = self._cameras or [(64, 64, 60.0)]
        if (
            self.recreate_after_scenes
            and stage_id not in self._scenes_in_simulator
            and len(self._scenes_in_simulator) >= self.recreate_after_scenes
            and self._sim is not None
        ):
            # habitat-sim keeps every stage it loaded; bound the host (or GPU) memory that takes
            self._make_current()
            self._sim.close(destroy=True)
            self._sim, self._egl, self._stage_id = None, None, None
            self._scenes_in_simulator.clear()
        try:
            if self._stage_id != stage_id or self._sim is None:
                self._configure(stage_id, cameras)
                self._scenes_in_simulator.add(stage_id)
        except Exception as err:  # habitat raises RuntimeError/ValueError/AssertionError for bad assets
            self._stage_id = None
            raise SceneLoadError(f"scene {scene.scene_id!r}: habitat-sim could not load {asset}: {err}") from err
        self._scene = scene
        return self._load_navmesh(scene, asset)

    def _load_navmesh(self, scene: SceneSpec, asset: Path) -> HabitatNavigable:
        pf = self._sim.pathfinder
        navmesh_file = navmesh_file_for(asset)
        if navmesh_file is not None:
            if not pf.load_nav_mesh(str(navmesh_file)) or not pf.is_loaded:
                raise SceneLoadError(f"scene {scene.scene_id!r}: could not load navmesh {navmesh_file}")
            source = str(navmesh_file)
        else:
            opts = self.navmesh_options
            settings = self._hs.NavMeshSettings()
            settings.set_defaults()
            settings.agent_height = opts.agent_height
            settings.agent_radius = opts.agent_radius
            settings.agent_max_climb = opts.agent_max_climb
            settings.agent_max_slope = opts.agent_max_slope
            settings.cell_size = opts.cell_size
            settings.cell_height = opts.cell_height
            built = self._sim.recompute_navmesh(pf, settings, include_static_objects=False)
            source = f"recomputed ({opts})"
            if not built or not pf.is_loaded:
                raise SceneLoadError(f"scene {scene.scene_id!r}: habitat could not build a navmesh ({source})")
        if not pf.navigable_area > 0.0:
            raise SceneLoadError(f"scene {scene.scene_id!r}: the navmesh is empty (navmesh {source})")
        return HabitatNavigable(pf, scene.scene_id)

    # -- rendering -----------------------------------------------------------------------------
    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        """Render RGB and z-depth from an OpenCV pose (``K`` must be centred with square pixels)."""
        self._check_open()
        if self._sim is None or self._stage_id is None:
            raise RuntimeError("HabitatRenderer.render called before load_scene")
        hfov = hfov_from_intrinsics(K, width, height)
        pose = check_pose(cam2world)
        camera = (int(width), int(height), hfov)
        agent = self._agent_for(camera)
        position, rotation_wxyz = opencv_pose_to_habitat_state(pose)
        state = self._hs.AgentState()
        state.position = position.astype(np.float32)
        # a plain list would be read as (x, y, z, w): build the (w, x, y, z) quaternion explicitly
        state.rotation = self._quaternion.quaternion(*(float(c) for c in rotation_wxyz))
        self._sim.get_agent(agent).set_state(state, reset_sensors=True, infer_sensor_states=True)
        self._make_current()
        obs = self._sim.get_sensor_observations(agent)  # draws this agent's two sensors only
        rgb_uuid, depth_uuid = self._sensor_uuids(*camera)
        rgb = np.ascontiguousarray(obs[rgb_uuid][..., :3], dtype=np.uint8)  # obs are views of reused buffers
        depth = np.array(obs[depth_uuid], dtype=np.float32)
        if rgb.shape[:2] != (height, width) or depth.shape != (height, width):
            raise RuntimeError(f"habitat-sim returned {rgb.shape[:2]} / {depth.shape} images, asked for {(height, width)}")
        depth[~np.isfinite(depth) | (depth <= 0.0) | (depth > self.far)] = 0.0
        return RenderedView(rgb=rgb, depth=depth)

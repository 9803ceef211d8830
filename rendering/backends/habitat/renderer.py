"""The ``habitat`` renderer: habitat-sim behind the renderer contract (see rendering.backends.habitat).

The only module of the project that imports ``habitat_sim``, and only when a renderer is created.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rendering.backend import NavigableSpace, RenderedView, SceneLoadError, SceneSpec
from rendering.backends.habitat.frame import opencv_pose_to_habitat_state
from rendering.backends.habitat.navmesh import HabitatNavigable, NavMeshOptions, navmesh_file_for
from rendering.backends.habitat.stage import glb_bounds, needs_unlit_materials, read_glb, stage_config, write_unlit_glb
from rendering.camera import check_intrinsics, check_pose
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
    loads a mesh file as Z-up (Matterport-style datasets, see rendering.scene_datasets), giving the same
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
                "SceneSpec.up_axis (set per dataset kind by rendering.scene_datasets)"
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

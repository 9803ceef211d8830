"""The ``habitat`` renderer backend: habitat-sim behind the same contract as the embedded renderer.

Split by job: :mod:`.renderer` (the simulator, cameras, EGL context, install help), :mod:`.stage`
(GLB stage configs and unlit copies), :mod:`.navmesh` (navmesh files, recast settings, the
PathFinder as a NavigableSpace) and :mod:`.frame` (the one OpenCV <-> Habitat frame conversion).

Habitat is the simulator CroCo's corpora were rendered with. This backend lets users who have
habitat-sim and the scene datasets render (and re-render) corpora with it through the same flows.
Its renderer module is the only one of the project that imports ``habitat_sim``, and it does so when a renderer
is created, so importing this module alone never needs habitat-sim.

How it maps our contract onto Habitat (habitat-sim 0.2.x):

* One ``habitat_sim.Simulator`` per renderer (create one renderer per worker process). Changing
  scene, resolution or field of view goes through ``Simulator.reconfigure``: the simulator and its
  GL context are kept, because destroying and re-creating simulators leaks GPU memory.
* One agent per camera configuration in use (resolution, FOV; up to MAX_CAMERAS), each carrying
  an RGB and a DEPTH pinhole camera at zero offset from its body; a pose is set by putting the
  body where the camera is, converted by :mod:`rendering.backends.habitat.frame` only.
* Habitat's pinhole camera knows a horizontal FOV and square pixels with the principal point at
  the image centre, so intrinsics ``K`` are checked for that and turned into ``hfov``.
* Habitat's DEPTH sensor already gives z-depth in metres with 0 where nothing was hit (checked by
  the tests); values outside (0, far] are set to 0 all the same.
* A GLB is loaded as a *stage* through a stage config that states the glTF convention (+Y up,
  -Z front), because habitat-sim treats a bare ``.glb`` as a Z-up Matterport mesh; for a scene
  spec with ``up_axis="z"`` it states the Z-up convention instead (HM3D, MP3D, ... whose specs
  rendering.scene_datasets builds that way). A URI that already is a ``*.stage_config.json`` is used as
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

from rendering.backends.habitat.navmesh import HabitatNavigable, NavMeshOptions, navmesh_file_for
from rendering.backends.habitat.renderer import (
    INSTALL_HELP,
    MAX_CAMERAS,
    HabitatRenderer,
    HabitatUnavailableError,
    default_gpu_device_id,
    hfov_from_intrinsics,
    import_habitat_sim,
)
from rendering.backends.habitat.stage import (
    GLTF_FRONT,
    GLTF_UP,
    ZUP_FRONT,
    ZUP_UP,
    glb_bounds,
    needs_unlit_materials,
    read_glb,
    stage_config,
    write_unlit_glb,
)

__all__ = [
    "GLTF_FRONT", "GLTF_UP", "INSTALL_HELP", "MAX_CAMERAS", "ZUP_FRONT", "ZUP_UP", "HabitatNavigable",
    "HabitatRenderer", "HabitatUnavailableError", "NavMeshOptions", "default_gpu_device_id", "glb_bounds",
    "hfov_from_intrinsics", "import_habitat_sim", "navmesh_file_for", "needs_unlit_materials", "read_glb",
    "stage_config", "write_unlit_glb",
]

"""Habitat navmeshes: the scene's own ``.navmesh`` file when there is one, else recast settings
to recompute one, and the NavigableSpace over Habitat's PathFinder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rendering.backend import SceneLoadError


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

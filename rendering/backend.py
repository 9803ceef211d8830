"""The renderer contract every backend (embedded moderngl, Habitat) fulfils.

A backend is created inside the worker process that uses it (GL contexts must never cross a
fork), loads one scene at a time and renders RGB + z-depth for OpenCV poses. It also exposes the
loaded scene's navigable space, because only the backend knows it (our floor finder for the
embedded renderer, the navmesh for Habitat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


# The file axis that points up; every backend turns it to world +Y on load.
UP_AXES = ("y", "z", "-y", "-z", "x", "-x")
SHADINGS = ("unlit", "lambert", "auto")


@dataclass(frozen=True)
class SceneSpec:
    """What to load. ``uri`` is a mesh file path or ``procedural:<seed>`` (see rendering.scenes).

    ``up_axis`` is the mesh file's frame and the only place it is stated, so every backend loads
    the scene in the same +Y-up world: ``"y"`` for glTF-conformant files, ``"z"`` for Z-up
    (Matterport-style) meshes, ``"-y"``, ``"-z"``, ``"x"``, ``"-x"`` for the rarer others.
    ``scale`` is metres per file unit: ``None`` = metres, with a check that refuses extents that
    look like millimetres or centimetres; a number is trusted as given; ``"auto"`` takes the unit
    the extent suggests. ``shading``: ``"unlit"`` (albedo only, the default here; corpus configs default to ``"auto"``), ``"lambert"`` (a fixed-direction
    light baked into every surface) or ``"auto"`` (lambert for surfaces without a texture or
    colour variation; see rendering.scenes.shading). Procedural scenes are built +Y up in metres
    and ignore ``up_axis`` and ``scale``. ``rendering.scene_datasets`` sets ``up_axis`` from the kind.
    """

    scene_id: str
    uri: str
    up_axis: str = "y"
    scale: float | str | None = None
    shading: str = "unlit"

    def __post_init__(self) -> None:
        if self.up_axis not in UP_AXES:
            raise ValueError(
                f"scene {self.scene_id!r}: up_axis must be one of {', '.join(UP_AXES)}, got {self.up_axis!r}"
            )
        scale = self.scale
        if scale is not None and scale != "auto":
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0 < float(scale) < float("inf")):
                raise ValueError(
                    f"scene {self.scene_id!r}: scale must be a positive number of metres per unit or 'auto', "
                    f"got {scale!r}"
                )
        if self.shading not in SHADINGS:
            raise ValueError(
                f"scene {self.scene_id!r}: shading must be one of {', '.join(SHADINGS)}, got {self.shading!r}"
            )


@dataclass(frozen=True)
class RenderedView:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 z-depth in metres, 0 = no surface

    @property
    def valid_fraction(self) -> float:
        return float(np.count_nonzero(self.depth > 0)) / self.depth.size


@runtime_checkable
class NavigableSpace(Protocol):
    """Where a person could stand: floor points with head clearance, in world coordinates (+Y up)."""

    def sample_point(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random navigable floor point (3,)."""

    def snap_point(self, point: np.ndarray) -> np.ndarray:
        """The navigable floor point nearest to ``point`` horizontally (3,)."""


@runtime_checkable
class Renderer(Protocol):
    name: str

    def load_scene(self, scene: SceneSpec) -> NavigableSpace:
        """Make ``scene`` current (reusing GPU resources where possible) and return its floor."""

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        """Render the current scene from an OpenCV pose with pinhole intrinsics ``K``."""

    def close(self) -> None:
        """Release the context / simulator."""


class SceneLoadError(ValueError):
    """A scene file is missing, unreadable, empty, or has no navigable floor."""

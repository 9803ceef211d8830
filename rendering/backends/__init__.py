"""The renderer backends by name: the one place a backend is declared.

Each entry imports its renderer only when one is created, inside the process that will use it
(never before a fork), so choosing one backend never needs another's dependencies. The contract
every backend fulfils is rendering.backend.Renderer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rendering.backend import Renderer


@dataclass(frozen=True)
class Backend:
    name: str
    load: Callable[[], type]  # imports and returns the renderer class
    missing: str  # what to do when its dependencies do not import


def _embedded() -> type:
    from rendering.backends.embedded import EmbeddedRenderer

    return EmbeddedRenderer


def _habitat() -> type:
    from rendering.backends.habitat import HabitatRenderer

    return HabitatRenderer


_ENTRIES = (
    Backend("embedded", _embedded, "install the package's dependencies (moderngl, trimesh) and an EGL driver"),
    Backend(
        "habitat",
        _habitat,
        "habitat-sim has no PyPI wheel for Linux: install it with conda "
        "(conda install habitat-sim headless -c conda-forge -c aihabitat) or build it from source, "
        "or use the default 'embedded' backend",
    ),
)
REGISTRY: dict[str, Backend] = {b.name: b for b in _ENTRIES}
BACKENDS: tuple[str, ...] = tuple(REGISTRY)


def create_renderer(name: str, **options: object) -> Renderer:
    """Build a renderer backend by name; ``options`` go to its constructor (e.g. ``device_index``)."""
    backend = REGISTRY.get(name)
    if backend is None:
        raise ValueError(f"unknown renderer backend {name!r}; available backends: {', '.join(BACKENDS)}")
    try:
        renderer_class = backend.load()
    except ImportError as err:
        raise ImportError(
            f"the {name!r} renderer backend needs dependencies that could not be imported ({err}). {backend.missing}"
        ) from err
    return renderer_class(**options)

"""Textures for procedural scenes: real photographs plus seeded procedural patterns.

Cross-view completion needs surfaces whose appearance is rich and not repetitive, so scenes mix
photographs (the sample images that ship inside scikit-image, read from its package folder, never
downloaded) with procedural patterns (value noise, tiles, stripes, checkers, wood grain) in random
colours. Procedural patterns tile seamlessly because surfaces repeat them (UVs are in metres).
Every function is a pure function of its ``numpy.random.Generator``.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

# Sample images shipped inside the scikit-image wheel (no network access needed).
PHOTO_FILES = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "brick.png",
    "grass.png",
    "gravel.png",
    "camera.png",
    "moon.png",
    "coins.png",
    "ihc.png",
    "hubble_deep_field.jpg",
    "color.png",
    "motorcycle_left.png",
)
# Photographs that read as surface materials (floors, walls); the others suit objects and pictures.
SURFACE_PHOTO_FILES = ("brick.png", "grass.png", "gravel.png", "moon.png", "coins.png", "ihc.png",
                       "hubble_deep_field.jpg", "coffee.png")
PICTURE_PHOTO_FILES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "color.png",
                       "motorcycle_left.png", "hubble_deep_field.jpg", "ihc.png")
PATTERNS = ("noise", "tiles", "stripes", "checker", "wood")


def photo_dir() -> Path:
    return Path(skimage.data.__file__).parent


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A shipped sample photograph as uint8 (H, W, 3); greyscale ones are replicated to RGB."""
    path = photo_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scikit-image sample photograph is missing from this install")
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.15, 0.7),
                  val: tuple[float, float] = (0.35, 0.95)) -> np.ndarray:
    """An RGB colour in [0, 1] with moderate saturation (interiors rarely glow)."""
    h = rng.random()
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def value_noise(rng: np.random.Generator, size: int, octaves: int = 4, base_cells: int = 4) -> np.ndarray:
    """Seamlessly tiling fractal value noise in [0, 1], (size, size) float32."""
    coords = np.arange(size) / size
    total = np.zeros((size, size), dtype=np.float64)
    weight_sum = 0.0
    for octave in range(octaves):
        cells = base_cells * 2**octave
        grid = rng.random((cells, cells))
        u = coords * cells
        i0 = np.floor(u).astype(np.int64)
        f = u - i0
        f = f * f * (3.0 - 2.0 * f)  # smoothstep removes the grid's creases
        i1 = (i0 + 1) % cells
        across = grid[:, i0] * (1 - f) + grid[:, i1] * f  # (cells, size): separable interpolation
        layer = across[i0] * (1 - f)[:, None] + across[i1] * f[:, None]
        weight = 0.5**octave
        total += weight * layer
        weight_sum += weight
    total /= weight_sum
    lo, hi = total.min(), total.max()
    return ((total - lo) / max(hi - lo, 1e-9)).astype(np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def noise_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Blotchy plaster/stone: three colours blended by fractal noise, plus fine grain."""
    n = value_noise(rng, size, octaves=int(rng.integers(4, 7)), base_cells=int(rng.choice([4, 8, 16])))
    m = value_noise(rng, size, octaves=3, base_cells=8)
    img = _mix(random_colour(rng), random_colour(rng), n)
    img = img * (1 - 0.5 * m[..., None]) + 0.5 * m[..., None] * random_colour(rng)[None, None, :]
    grain = value_noise(rng, size, octaves=2, base_cells=max(size // 8, 1))
    return _to_uint8(img * (0.8 + 0.2 * grain)[..., None])


def tiles_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Floor/wall tiles: per-tile colour variation, grout lines, a little grime."""
    n = int(rng.choice([2, 4, 8]))
    tile = size // n
    grout = max(1, int(tile * rng.uniform(0.03, 0.1)))
    base, alt = random_colour(rng), random_colour(rng)
    yy, xx = np.mgrid[:size, :size]
    ty, tx = yy // tile % n, xx // tile % n
    jitter = rng.uniform(-0.08, 0.08, (n, n, 3))
    checker = ((ty + tx) % 2).astype(np.float64) if rng.random() < 0.5 else np.zeros((size, size))
    img = _mix(base, alt, checker) + jitter[ty, tx]
    in_grout = ((yy % tile) < grout) | ((xx % tile) < grout)
    img[in_grout] = random_colour(rng, sat=(0.0, 0.15), val=(0.2, 0.8))
    img *= (0.85 + 0.15 * value_noise(rng, size, octaves=3, base_cells=8))[..., None]
    return _to_uint8(img)


def stripes_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Wallpaper-like stripes with 2-4 colours along a random axis."""
    k = int(rng.integers(2, 5))
    colours = np.stack([random_colour(rng) for _ in range(k)])
    repeats = int(rng.choice([2, 4, 8, 16]))
    period = size // repeats
    widths = rng.dirichlet(np.ones(k)) * period
    edges = np.cumsum(widths)
    pos = np.arange(size) % period
    band = np.minimum(np.searchsorted(edges, pos, side="right"), k - 1)
    img = np.broadcast_to(colours[band][None, :, :], (size, size, 3)).copy()
    if rng.random() < 0.5:
        img = img.transpose(1, 0, 2).copy()
    img *= (0.9 + 0.1 * value_noise(rng, size, octaves=4, base_cells=4))[..., None]
    return _to_uint8(img)


def checker_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    n = int(rng.choice([2, 4, 8, 16]))
    cell = size // n
    yy, xx = np.mgrid[:size, :size]
    t = (((yy // cell) + (xx // cell)) % 2).astype(np.float64)
    img = _mix(random_colour(rng), random_colour(rng), t)
    img *= (0.85 + 0.15 * value_noise(rng, size, octaves=4, base_cells=4))[..., None]
    return _to_uint8(img)


def wood_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grain: bands along one axis bent by noise (integer frequency keeps it tiling)."""
    freq = int(rng.integers(6, 20))
    warp = value_noise(rng, size, octaves=3, base_cells=2)
    v = np.arange(size)[None, :] / size
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (freq * v + rng.uniform(0.5, 2.0) * warp))
    light = random_colour(rng, sat=(0.3, 0.6), val=(0.5, 0.85))
    dark = light * rng.uniform(0.45, 0.7)
    img = _mix(dark, light, grain**1.5)
    if rng.random() < 0.5:
        img = img.transpose(1, 0, 2).copy()
    return _to_uint8(img)


_PATTERN_FUNCS = {
    "noise": noise_texture,
    "tiles": tiles_texture,
    "stripes": stripes_texture,
    "checker": checker_texture,
    "wood": wood_texture,
}


def pattern_texture(rng: np.random.Generator, size: int, pattern: str | None = None) -> np.ndarray:
    """A procedural pattern (random kind unless ``pattern`` names one), uint8 (size, size, 3)."""
    if pattern is None:
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    if pattern not in _PATTERN_FUNCS:
        raise ValueError(f"unknown texture pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    return _PATTERN_FUNCS[pattern](rng, size)


def photo_texture(rng: np.random.Generator, size: int, name: str | None = None,
                  whole: bool = False, choices: tuple[str, ...] = PHOTO_FILES) -> np.ndarray:
    """A random square crop (or the whole image, for pictures on walls) of a shipped photograph,
    resized to ``size`` and colour-jittered; greyscale photographs get a random tint."""
    if name is None:
        name = choices[int(rng.integers(len(choices)))]
    photo = load_photo(name)
    h, w = photo.shape[:2]
    if whole:
        crop = photo
    else:
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = photo[top:top + side, left:left + side]
    img = np.asarray(
        Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64
    ) / 255.0
    grey = np.array_equal(crop[..., 0], crop[..., 1]) and np.array_equal(crop[..., 1], crop[..., 2])
    if grey:
        img = img * (0.5 + 0.5 * random_colour(rng, sat=(0.2, 0.6), val=(0.8, 1.0)))
    img = img * rng.uniform(0.8, 1.15, 3)
    return _to_uint8(img)

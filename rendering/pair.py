"""One accepted image pair with everything the shard schema (rendering.shards) stores about it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rendering.scene_uri import key_slug

SCHEMA_VERSION = 3  # 3: meta.json records information1/information2; 2: depth members are .npy (1: 16-bit PNG)
INFORMATION_BLOCK = 8  # pixels per side of the blocks image_information looks at
INFORMATION_RANGE = 4  # levels (of 255) a block must span in some colour channel to count


def image_information(rgb: np.ndarray) -> float:
    """Fraction of 8x8 pixel blocks whose values span at least 4 of 255 levels in some channel.

    A view of one flat-coloured surface scores 0 (every block is one colour); edges between
    differently lit or coloured surfaces mark the blocks they cross; a texture marks nearly every
    block, even a faint one. It depends on the image alone, so it can be checked per view and
    recomputed from stored images.
    """
    image = np.asarray(rgb)
    b = INFORMATION_BLOCK
    h, w = (image.shape[0] // b) * b, (image.shape[1] // b) * b
    if h == 0 or w == 0:
        return float(image.size > 0 and int(np.ptp(image)) >= INFORMATION_RANGE)
    # Block extremes as b elementwise maxima/minima over row slices, then over column slices: the
    # same values as a max over axes (1, 3) of the block view, ~17x faster at 256 px (numpy's
    # reduction over two strided short axes walks the image element by element).
    blocks = image[:h, :w].reshape(h // b, b, w // b, b, -1)
    row_hi = row_lo = blocks[:, 0]
    for i in range(1, b):
        row_hi, row_lo = np.maximum(row_hi, blocks[:, i]), np.minimum(row_lo, blocks[:, i])
    hi, lo = row_hi[:, :, 0], row_lo[:, :, 0]
    for i in range(1, b):
        hi, lo = np.maximum(hi, row_hi[:, :, i]), np.minimum(lo, row_lo[:, :, i])
    spread = hi.astype(np.int16) - lo
    return float(np.mean(spread.max(axis=-1) >= INFORMATION_RANGE))


@dataclass(frozen=True)
class CovisScores:
    """Co-visibility of a pair. ``*_hw`` are normalised by all pixels (CroCo's primary score),
    ``*_valid`` by the source view's valid-depth pixels."""

    one_to_two_hw: float
    two_to_one_hw: float
    one_to_two_valid: float
    two_to_one_valid: float

    @property
    def score(self) -> float:
        """The pair score: the weaker direction, H*W-normalised."""
        return min(self.one_to_two_hw, self.two_to_one_hw)

    def as_dict(self) -> dict[str, float]:
        return {
            "covis": self.score,
            "covis_1to2": self.one_to_two_hw,
            "covis_2to1": self.two_to_one_hw,
            "covis_1to2_valid": self.one_to_two_valid,
            "covis_2to1_valid": self.two_to_one_valid,
        }


@dataclass(frozen=True)
class PairRecord:
    scene_id: str
    scene_uri: str
    pair_index: int
    seed: int  # the corpus seed; the pair's generator is derived from (seed, scene_id, pair_index)
    renderer: str
    img1: np.ndarray  # (H, W, 3) uint8
    img2: np.ndarray
    depth1: np.ndarray  # (H, W) float32 metres
    depth2: np.ndarray
    K1: np.ndarray  # 3x3
    K2: np.ndarray
    cam2world1: np.ndarray  # 4x4 OpenCV
    cam2world2: np.ndarray
    covis: CovisScores
    attempts: int  # candidate views rendered before acceptance (references + second views)
    rejections: dict[str, int] = field(default_factory=dict)  # reason -> count
    # image_information of img1 and img2 when the sampler already computed them (its view check),
    # so meta() does not compute them again; None: meta() computes them.
    information: tuple[float, float] | None = None

    @property
    def height(self) -> int:
        return int(self.img1.shape[0])

    @property
    def width(self) -> int:
        return int(self.img1.shape[1])

    @property
    def valid1(self) -> float:
        return float(np.count_nonzero(self.depth1 > 0)) / self.depth1.size

    @property
    def valid2(self) -> float:
        return float(np.count_nonzero(self.depth2 > 0)) / self.depth2.size

    def meta(self, depth_scale: float = 0.001) -> dict:
        """The JSON-serialisable ``meta.json`` of the shard schema."""
        information = self.information
        if information is None:
            information = image_information(self.img1), image_information(self.img2)
        return {
            "schema_version": SCHEMA_VERSION,
            "scene_id": self.scene_id,
            "scene_uri": self.scene_uri,
            "pair_index": int(self.pair_index),
            "seed": int(self.seed),
            "renderer": self.renderer,
            "width": self.width,
            "height": self.height,
            "depth_scale": float(depth_scale),
            "K1": np.asarray(self.K1, dtype=np.float64).tolist(),
            "K2": np.asarray(self.K2, dtype=np.float64).tolist(),
            "cam2world1": np.asarray(self.cam2world1, dtype=np.float64).tolist(),
            "cam2world2": np.asarray(self.cam2world2, dtype=np.float64).tolist(),
            **self.covis.as_dict(),
            "valid1": self.valid1,
            "valid2": self.valid2,
            "information1": information[0],
            "information2": information[1],
            "attempts": int(self.attempts),
            "rejections": {k: int(v) for k, v in sorted(self.rejections.items())},
        }


scene_slug = key_slug  # the sample-key rule lives in rendering.scene_uri


def sample_key(scene_id: str, pair_index: int) -> str:
    """The shard/file key of a pair: ``<scene_slug>-<pair_index:08d>`` (rendering.scene_uri.key_slug)."""
    if isinstance(pair_index, bool) or not isinstance(pair_index, (int, np.integer)) or pair_index < 0:
        raise ValueError(f"pair_index must be a non-negative integer, got {pair_index!r}")
    return f"{scene_slug(scene_id)}-{int(pair_index):08d}"

"""One accepted image pair with everything the shard schema (rendering.shards) stores about it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rendering.scene_uri import key_slug

SCHEMA_VERSION = 2  # 2: depth members are .npy (1: 16-bit PNG)


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
            "attempts": int(self.attempts),
            "rejections": {k: int(v) for k, v in sorted(self.rejections.items())},
        }


scene_slug = key_slug  # the sample-key rule lives in rendering.scene_uri


def sample_key(scene_id: str, pair_index: int) -> str:
    """The shard/file key of a pair: ``<scene_slug>-<pair_index:08d>`` (rendering.scene_uri.key_slug)."""
    if isinstance(pair_index, bool) or not isinstance(pair_index, (int, np.integer)) or pair_index < 0:
        raise ValueError(f"pair_index must be a non-negative integer, got {pair_index!r}")
    return f"{scene_slug(scene_id)}-{int(pair_index):08d}"

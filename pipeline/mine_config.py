"""The mining configuration: a TOML with ``run_dir`` and a ``[mine]`` section (``crocopipe mine``).

A mined corpus lands in ``<run_dir>/corpus`` with the same layout as a rendered one, so any
``[pretrain]`` can read it, alone or in a mixture (``corpora = [...]``). Validated like the run
config: unknown keys refused, messages naming file, key and value, paths relative to the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config import ConfigError, RunFolderConfig, _resolve, format_validation_error, json_sha256, read_toml
from rendering.mining import MiningConfig

EXECUTION_FIELDS = frozenset({"workers", "threads_per_worker"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaptureSource(_Strict):
    """A folder of posed RGB-D sequences of one layout (or one sequence folder)."""

    kind: str = Field(description="scannet, arkitscenes, tum or frames (rendering.captures.CAPTURE_KINDS)")
    root: Path
    sequences: list[str] | None = Field(None, description="only these sequence folder names")
    limit: int | None = Field(None, ge=1, description="at most this many sequences (sorted order)")
    tum_camera: str = Field("auto", description="TUM intrinsics: auto (from the folder name), freiburg1/2/3, default")
    intrinsics: tuple[float, float, float, float] | None = Field(
        None, description="TUM only: fx fy cx cy (integer pixel centres) instead of tum_camera")
    max_time_difference: float = Field(0.02, gt=0.0, le=10.0, description="TUM: colour-depth association (s)")
    max_pose_difference: float | None = Field(
        None, gt=0.0, le=10.0, description="TUM/ARKitScenes: frame-to-pose timestamp tolerance (s; default 0.02/0.05)")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from rendering.captures import CAPTURE_KINDS

        if value not in CAPTURE_KINDS:
            raise ValueError(f"unknown capture kind {value!r}; allowed: {', '.join(CAPTURE_KINDS)}")
        return value

    def reader_options(self) -> dict[str, Any]:
        """Keyword arguments of this kind's reader (rendering.captures.read_sequence)."""
        if self.kind == "tum":
            options: dict[str, Any] = {"camera": self.tum_camera, "max_difference": self.max_time_difference,
                                       "intrinsics": list(self.intrinsics) if self.intrinsics else None}
            if self.max_pose_difference is not None:
                options["max_pose_difference"] = self.max_pose_difference
            return options
        if self.kind == "arkitscenes" and self.max_pose_difference is not None:
            return {"max_pose_difference": self.max_pose_difference}
        return {}


class MineConfig(_Strict):
    """What to mine and how the pairs are written."""

    sources: list[CaptureSource] = Field(min_length=1)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    width: int | None = Field(None, ge=8, le=8192, description="output width (None: the depth map's)")
    height: int | None = Field(None, ge=8, le=8192, description="output height (None: the depth map's)")
    crops: bool = Field(False, description="cut each view to the rectangle covering its co-visible region")
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = Field(95, ge=1, le=100)
    depth_scale: float = Field(0.001, gt=0.0, le=1.0, description="metres per uint16 depth unit in the shards")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of sequences held out for validation")
    val_sequences: list[str] = Field(default_factory=list, description="explicit validation sequence scene ids")
    seed: int = Field(0, ge=0)
    pairs: Path | None = Field(
        None, description="a published pairs.parquet: rebuild exactly its pairs from these sources instead of mining")
    workers: int = Field(1, ge=1, le=1024, description="mining processes (one sequence each)")
    threads_per_worker: int = Field(1, ge=1, le=2, description="2: both directions of each exact score at once")

    @model_validator(mode="after")
    def _size(self) -> MineConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("set both width and height, or neither")
        return self

    @property
    def out_size(self) -> tuple[int, int] | None:
        return None if self.width is None else (self.width, self.height)

    def content_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))

    def content_hash(self) -> str:
        return json_sha256(self.content_dict())


class MineRunConfig(RunFolderConfig):
    mine: MineConfig


def load_mine_config(path: Path | str) -> MineRunConfig:
    path = Path(path).expanduser()
    data = read_toml(path)
    try:
        config = MineRunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path, data, MineRunConfig)) from None
    base = path.resolve().parent
    sources = [s.model_copy(update={"root": _resolve(s.root, base)}) for s in config.mine.sources]
    pairs = None if config.mine.pairs is None else _resolve(config.mine.pairs, base)
    resolved = config.model_copy(update={"run_dir": _resolve(config.run_dir, base),
                                         "mine": config.mine.model_copy(update={"sources": sources, "pairs": pairs})})
    resolved._source = path.resolve()
    return resolved

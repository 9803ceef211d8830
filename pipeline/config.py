"""The run configuration: one TOML file with ``run_dir``, ``[corpus]``, ``[pretrain]``, ``[evaluate]``.

Everything is validated data (pydantic, unknown keys refused). :func:`load_run_config` turns any
problem into a :class:`ConfigError` whose message names the file, the dotted key, the value and what
is allowed, so a user can fix a typo without reading a traceback. Relative paths are relative to
the config file's folder, so a config works from any current directory.

A corpus is identified by a content hash of its resolved settings (not of how it is run: workers
and task runner are left out) together with the code version.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tomllib
import typing
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError, field_validator, model_validator,
)

from evaluation.config import EvaluateConfig
from evaluation.tasks import EXTERNAL_DATASETS
from rendering.backends import BACKENDS
from rendering.layout import RunLayout
from rendering.scene_uri import PROCEDURAL_PREFIX, is_procedural, procedural_uri  # noqa: F401  (PROCEDURAL_PREFIX re-exported)
from rendering.sampling import SamplerConfig
from training.config import PretrainConfig

# Corpus fields that change how a corpus is produced but not what it contains.
# on_scene_error decides which scenes are used, not what any unit of a used scene contains.
EXECUTION_FIELDS = frozenset({"workers", "task_runner", "dask_address", "on_scene_error"})


class ConfigError(ValueError):
    """A run config that cannot be used; the message is meant for the user as is."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProceduralScenes(_Strict):
    """``count`` generated scenes with seeds ``first_seed .. first_seed + count - 1``."""

    count: int = Field(ge=1, le=1_000_000)
    first_seed: int = Field(0, ge=0)
    rooms: int | None = Field(None, ge=1, le=64, description="rooms per scene (None: the generator's choice)")
    objects: int | None = Field(None, ge=0, le=10_000, description="objects per scene (None: the generator's choice)")

    def uris(self) -> list[str]:
        query = "&".join(f"{k}={v}" for k, v in (("rooms", self.rooms), ("objects", self.objects)) if v is not None)
        return [procedural_uri(seed, query) for seed in range(self.first_seed, self.first_seed + self.count)]


ScaleOption = float | Literal["auto"] | None
ShadingOption = Literal["unlit", "lambert", "auto"]
_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"


def _check_up(value: str | None) -> str | None:
    from rendering.backend import UP_AXES

    if value is not None and value not in UP_AXES:
        raise ValueError(f"unknown up axis {value!r}; allowed: {', '.join(UP_AXES)}")
    return value


def _check_scale(value: ScaleOption) -> ScaleOption:
    if isinstance(value, float) and not (0.0 < value < float("inf")):
        raise ValueError(f"scale must be a positive number of metres per file unit or 'auto', got {value!r}")
    return value


class SceneEntry(_Strict):
    """One mesh file (or procedural URI) with the options that say how to read it."""

    uri: str = Field(min_length=1, description="mesh file path (relative to the config) or procedural:<seed>[?..]")
    up: str = Field("y", description="the file axis that points up: y, z, -y, -z, x, -x")
    scale: ScaleOption = Field(None, description="metres per file unit; 'auto' from the extent; unset: metres")
    name: str | None = Field(None, pattern=_NAME_PATTERN, description="scene id (default: from the file name)")
    shading: ShadingOption | None = Field(None, description="unlit, lambert or auto (default: corpus.shading)")

    _up = field_validator("up")(classmethod(lambda cls, v: _check_up(v)))
    _scale = field_validator("scale")(classmethod(lambda cls, v: _check_scale(v)))


# A plain string or a table; the discriminator keeps a bad table's errors to the table's own keys.
SceneItem = Annotated[
    Union[Annotated[str, Tag("uri")], Annotated[SceneEntry, Tag("table")]],
    Discriminator(lambda value: "uri" if isinstance(value, str) else "table"),
]


class DatasetSource(_Strict):
    """A folder of a scene dataset (HM3D, Replica, ScanNet, ...) whose scenes are discovered there.

    Discovery itself lives in ``rendering.scene_datasets``; this entry only says where to look.
    """

    root: Path
    kind: str = Field(description="dataset layout, one of rendering.scene_datasets.DATASET_KINDS")
    split: str | None = Field(None, description="only scenes of this dataset split (HM3D: train, val, minival)")
    limit: int | None = Field(None, ge=1, description="use at most this many scenes (sorted order)")
    up: str | None = Field(None, description="the files' up axis (default: the kind's, see rendering.scene_datasets)")
    scale: ScaleOption = Field(None, description="metres per file unit of every scene; 'auto'; unset: metres")

    _up = field_validator("up")(classmethod(lambda cls, v: _check_up(v)))
    _scale = field_validator("scale")(classmethod(lambda cls, v: _check_scale(v)))

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from rendering.scene_datasets import DATASET_KINDS

        if value not in DATASET_KINDS:
            raise ValueError(f"unknown dataset kind {value!r}; allowed: {', '.join(DATASET_KINDS)}")
        return value


class ScenesConfig(_Strict):
    """Where the corpus's scenes come from; the sources are combined in this order."""

    procedural: ProceduralScenes | None = None
    uris: list[SceneItem] = Field(
        default_factory=list,
        description="procedural:<seed>[?..] URIs or mesh file paths, or tables { uri, up, scale, name, shading }",
    )
    datasets: list[DatasetSource] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_scenes(self) -> ScenesConfig:
        if self.procedural is None and not self.uris and not self.datasets:
            raise ValueError("no scenes: set procedural, uris and/or datasets")
        if any(isinstance(uri, str) and not uri.strip() for uri in self.uris):
            raise ValueError("scene URIs must not be empty strings")
        return self

    def entries(self) -> list[SceneEntry]:
        """``uris`` with every plain string as an entry with default options."""
        return [SceneEntry(uri=u) if isinstance(u, str) else u for u in self.uris]


class CorpusConfig(_Strict):
    """What pair corpus to generate and how to run the generation."""

    seed: int = Field(0, ge=0, description="corpus seed; every pair's generator derives from it")
    scenes: ScenesConfig
    pairs_per_scene: int = Field(ge=1, le=10_000_000)
    pairs_per_shard: int = Field(ge=1, le=100_000, description="pairs per work unit and shard")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of scenes held out for validation")
    val_scenes: list[str] = Field(default_factory=list, description="explicit validation scene ids (overrides val_fraction)")
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = Field(95, ge=1, le=100)
    depth_scale: float = Field(0.001, gt=0.0, le=1.0, description="metres per uint16 depth unit")
    shading: ShadingOption = Field(
        "auto", description="unlit, lambert, or auto (a fixed Lambert term on flat-coloured surfaces)"
    )
    on_scene_error: Literal["fail", "skip"] = Field(
        "fail", description="a scene the scene check refuses: fail the run before any unit, or skip it"
    )
    backend: str = Field("embedded", description="renderer backend, one of rendering.backends.BACKENDS")
    backend_options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    workers: int = Field(1, ge=1, le=1024, description="render processes")
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = Field(None, description="scheduler address of an existing Dask cluster")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown renderer backend {value!r}; allowed: {', '.join(BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CorpusConfig:
        if self.dask_address is not None and self.task_runner != "dask":
            raise ValueError("dask_address is set but task_runner is not 'dask'")
        if len(set(self.val_scenes)) != len(self.val_scenes):
            raise ValueError(f"val_scenes lists a scene twice: {self.val_scenes}")
        return self

    def content_dict(self) -> dict[str, Any]:
        """The settings that determine the corpus's content (JSON-ready)."""
        return self.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))

    def content_hash(self) -> str:
        return json_sha256(self.content_dict())


class PlanAssumptions(_Strict):
    """What `crocopipe plan` assumes where it cannot count or measure (it says so in its output)."""

    assumed_scenes: int | None = Field(
        None, ge=1, description="scenes of the [corpus] datasets when their folders are not on this machine"
    )
    gpu_tflops: float = Field(
        100.0, gt=0, description="sustained model FLOP/s per GPU, in TFLOP/s (100: an A100 in bf16 at ~32% of peak)"
    )
    render_pairs_per_s: float = Field(8.0, gt=0, description="accepted pairs per second per render worker")


class RunFolderConfig(_Strict):
    """A config that owns a run folder: where it lives and the file it was read from."""

    run_dir: Path
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The TOML file this config was read from (None when built in code)."""
        return self._source

    @property
    def layout(self) -> RunLayout:
        """Every path of the run folder."""
        return RunLayout(self.run_dir)

    @property
    def corpus_dir(self) -> Path:
        return self.layout.corpus_dir

    @property
    def prefect_home(self) -> Path:
        return self.layout.prefect_home


class RunConfig(RunFolderConfig):
    """One run: where it lives and the settings of each stage."""

    corpus: CorpusConfig
    pretrain: PretrainConfig | None = None
    evaluate: EvaluateConfig | None = None
    plan: PlanAssumptions = Field(default_factory=PlanAssumptions)


def json_sha256(data: dict[str, Any]) -> str:
    """sha256 (hex) of ``data`` as canonical JSON (sorted keys, no spaces): the content hashes of
    corpus and mining configs and of a corpus's unit settings."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """The installed crocopipe version, plus the git commit when running from a checkout."""
    try:
        version = metadata.version("crocopipe")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


def corpus_id(corpus: CorpusConfig) -> str:
    """Identifies a corpus: its content hash combined with the code version."""
    return hashlib.sha256(f"{corpus.content_hash()}|{code_version()}".encode()).hexdigest()[:16]


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's parsed TOML; ConfigError naming the file when it is missing or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file: {err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load_run_config(path: Path | str) -> RunConfig:
    """Read, validate and resolve a run TOML; raise ConfigError with a message fit for the user."""
    path = Path(path).expanduser()
    return run_config_from_dict(read_toml(path), path)


def run_config_from_dict(data: dict[str, Any], path: Path) -> RunConfig:
    """Validate already-parsed config data that came from ``path`` (for messages and relative paths)."""
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path, data)) from None
    base = path.resolve().parent
    corpus = config.corpus
    scenes = corpus.scenes.model_copy(
        update={
            "uris": [_resolve_entry(uri, base) for uri in corpus.scenes.uris],
            "datasets": [d.model_copy(update={"root": _resolve(d.root, base)}) for d in corpus.scenes.datasets],
        }
    )
    resolved = config.model_copy(
        update={
            "run_dir": _resolve(config.run_dir, base),
            "corpus": corpus.model_copy(update={"scenes": scenes}),
            "evaluate": _resolve_external_paths(config.evaluate, base),
            "pretrain": _resolve_corpora_paths(config.pretrain, base),
        }
    )
    resolved._source = path.resolve()
    return resolved


def _resolve_corpora_paths(pretrain: PretrainConfig | None, base: Path) -> PretrainConfig | None:
    if pretrain is None or not pretrain.corpora:
        return pretrain
    corpora = [c.model_copy(update={"path": _resolve(c.path, base)}) for c in pretrain.corpora]
    return pretrain.model_copy(update={"corpora": corpora})


def _resolve_external_paths(evaluate: EvaluateConfig | None, base: Path) -> EvaluateConfig | None:
    """Every external dataset section's path keys (evaluation.tasks) relative to the config file."""
    if evaluate is None:
        return None
    update: dict[str, Any] = {}
    if evaluate.corpora:
        update["corpora"] = [c.model_copy(update={"path": _resolve(c.path, base)}) for c in evaluate.corpora]
    for name, dataset in EXTERNAL_DATASETS.items():
        section = getattr(evaluate, name)
        if section is not None:
            update[name] = section.model_copy(
                update={key: _resolve(getattr(section, key), base) for key in dataset.path_keys}
            )
    return evaluate.model_copy(update=update)


def _resolve(p: Path, base: Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_uri(uri: str, base: Path) -> str:
    return uri if is_procedural(uri) else str(_resolve(Path(uri), base))


def _resolve_entry(entry: str | SceneEntry, base: Path) -> str | SceneEntry:
    if isinstance(entry, str):
        return _resolve_uri(entry, base)
    return entry.model_copy(update={"uri": _resolve_uri(entry.uri, base)})


# ---------------------------------------------------------------------------------------------
# Error messages


def format_validation_error(err: ValidationError, path: Path, data: Any,
                            model: type[BaseModel] | None = None) -> str:
    """One line per problem, naming the dotted key; ``model`` (default RunConfig) lists allowed keys."""
    lines = [f"{path}: invalid run config ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    for item in err.errors(include_url=False):
        loc = item["loc"]
        key = _dotted(loc)
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model or RunConfig, loc[:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {key} = {_short(item.get('input'))}: {message}")
    return "\n".join(lines)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model found at ``loc`` below ``model`` (empty when it is not a model)."""
    current: Any = model
    for part in loc:
        current = _model_in(current)
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
    current = _model_in(current)
    return sorted(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation such as ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None

"""Plan a corpus: the scenes, their train/val split and the work units, all decided up front.

Planning reads no pixels and writes nothing, so a bad config (unknown val scene, missing scene
file, duplicate scene id) fails before any output exists. The plan is a pure function of the
corpus config: unit ids and shard numbers are stable across runs and resumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.config import CorpusConfig
from rendering.backend import SceneSpec
from rendering.layout import CorpusLayout
from rendering.scene_uri import is_procedural, mesh_path, scene_id_for_uri, split_procedural

SPLITS = ("train", "val")


class CorpusPlanError(ValueError):
    """The config names scenes that cannot be used (missing file, duplicate id, unknown val id)."""


@dataclass(frozen=True)
class WorkUnit:
    """A chunk of consecutive pairs of one scene, written to one shard and one unit manifest."""

    unit_id: str
    split: str
    shard_index: int
    scene_id: str
    scene_uri: str
    first_pair: int
    n_pairs: int
    scene_up_axis: str = "y"  # the mesh file's up axis (rendering.backend.SceneSpec.up_axis)
    scene_scale: float | str | None = None  # metres per file unit (SceneSpec.scale)
    scene_shading: str = "unlit"  # SceneSpec.shading (plans written before it existed: unlit)
    unit_key: str = ""  # content identity (pipeline.corpus.identity); "" in plans made before it

    @property
    def scene(self) -> SceneSpec:
        return SceneSpec(self.scene_id, self.scene_uri, self.scene_up_axis, self.scene_scale, self.scene_shading)

    @property
    def shard_relpath(self) -> str:
        return CorpusLayout.shard_relpath(self.split, self.shard_index)

    @property
    def unit_relpath(self) -> str:
        return f"units/{self.unit_id}.parquet"

    @property
    def pair_indices(self) -> range:
        return range(self.first_pair, self.first_pair + self.n_pairs)

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_scenes(corpus: CorpusConfig) -> list[SceneSpec]:
    """Every scene of the config, in config order, with unique ids; mesh files must exist."""
    shading = corpus.shading
    entries: list[tuple[SceneSpec, str]] = []  # (spec, where in the config)
    if corpus.scenes.procedural is not None:
        entries += [(SceneSpec(scene_id_for_uri(u), u, shading=shading), "corpus.scenes.procedural")
                    for u in corpus.scenes.procedural.uris()]
    for i, entry in enumerate(corpus.scenes.entries()):
        where = f"corpus.scenes.uris[{i}]"
        uri = entry.uri
        if not is_procedural(uri):
            path = mesh_path(uri)
            if not path.is_file():
                raise CorpusPlanError(f"{where}: scene file {str(path)!r} does not exist")
        elif not split_procedural(uri)[0].isdigit():
            raise CorpusPlanError(f"{where}: procedural URI {uri!r} must be procedural:<non-negative seed>[?...]")
        try:
            scene_id = entry.name or scene_id_for_uri(uri)
        except ValueError as err:
            raise CorpusPlanError(f"{where}: {err}") from None
        spec = SceneSpec(scene_id, uri, entry.up, entry.scale, entry.shading or shading)
        entries.append((spec, where))
    specs = [spec for spec, _ in entries]
    for d_index, source in enumerate(corpus.scenes.datasets):
        specs += _dataset_scenes(source, f"corpus.scenes.datasets[{d_index}]", shading)
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.scene_id in seen:
            raise CorpusPlanError(
                f"two scenes get the id {spec.scene_id!r} ({seen[spec.scene_id]!r} and {spec.uri!r}); "
                "rename one of the files or give one a name"
            )
        seen[spec.scene_id] = spec.uri
    return specs


def _dataset_scenes(source, where: str, shading: str) -> list[SceneSpec]:
    """Scenes of a dataset folder, found by rendering.scene_datasets (the discovery extension point),
    with the source's up axis and scale where it sets them."""
    from dataclasses import replace

    from rendering.scene_datasets import DatasetError, discover

    try:
        found = discover(source.kind, source.root)
    except DatasetError as err:
        raise CorpusPlanError(f"{where}: {err}") from None
    if source.split is not None:
        found = [s for s in found if s.split == source.split]
    specs = [replace(s.spec, up_axis=source.up or s.spec.up_axis, scale=source.scale, shading=shading)
             for s in found][: source.limit]
    if not specs:
        raise CorpusPlanError(f"{where}: no {source.kind} scenes of split {source.split!r} under {str(source.root)!r}")
    return specs


def assign_splits(scene_ids: list[str], corpus: CorpusConfig, skipped: frozenset[str] = frozenset()) -> dict[str, str]:
    """Scene id -> "train"/"val". Explicit ``val_scenes`` win; otherwise rendering.scene_datasets'
    split_by_scene decides from a hash of (seed, scene id): stable under reordering and under
    adding scenes, with at least one val and one train scene when val_fraction > 0. ``skipped``
    scenes (refused by the scene check) may be named in ``val_scenes`` but get no split."""
    known = set(scene_ids) | set(skipped)
    if corpus.val_scenes:
        unknown = [s for s in corpus.val_scenes if s not in known]
        if unknown:
            raise CorpusPlanError(
                f"corpus.val_scenes: unknown scene ids {unknown}; scene ids of this config: {sorted(known)}"
            )
        val = set(corpus.val_scenes) & set(scene_ids)
    else:
        from rendering.scene_datasets import split_by_scene

        split = split_by_scene([SceneSpec(s, "") for s in scene_ids], corpus.val_fraction, salt=str(corpus.seed))
        val = {spec.scene_id for spec in split["val"]}
    if len(val) == len(scene_ids):
        raise CorpusPlanError("every scene is in the val split; keep at least one training scene")
    return {s: ("val" if s in val else "train") for s in scene_ids}


def plan_units(
    corpus: CorpusConfig, skip: frozenset[str] = frozenset(), previous: dict[str, tuple[str, int]] | None = None
) -> list[WorkUnit]:
    """The corpus's work units, each with its content key (pipeline.corpus.identity).

    Scenes in ``skip`` (refused by the scene check, ``on_scene_error = "skip"``) get no units.
    Shards are numbered per split: a unit whose key is in ``previous`` (key -> (split, shard
    index) of the folder's earlier plan, see :func:`previous_assignment`) keeps its shard, the
    others take the lowest free numbers in config scene order, so adding or removing scenes never
    renumbers the shards of the others.
    """
    from pipeline.corpus.identity import scene_digest, unit_key, units_hash

    scenes = [s for s in resolve_scenes(corpus) if s.scene_id not in skip]
    if not scenes:
        raise CorpusPlanError("no usable scene is left: the scene check refused every scene")
    splits = assign_splits([s.scene_id for s in scenes], corpus, frozenset(skip))
    settings = units_hash(corpus)
    per_scene = corpus.pairs_per_scene
    chunk = corpus.pairs_per_shard
    drafts = []
    for spec in scenes:
        split = splits[spec.scene_id]
        digest = scene_digest(spec)
        for c, first in enumerate(range(0, per_scene, chunk)):
            n = min(chunk, per_scene - first)
            drafts.append((spec, split, c, first, n, unit_key(settings, digest, split, first, n)))
    previous = previous or {}
    kept = {key: previous[key] for _, split, _, _, _, key in drafts if previous.get(key, ("",))[0] == split}
    used = {split: {index for s, index in kept.values() if s == split} for split in SPLITS}
    next_free = {split: 0 for split in SPLITS}
    units = []
    for spec, split, c, first, n, key in drafts:
        if key in kept:
            index = kept[key][1]
        else:
            while next_free[split] in used[split]:
                next_free[split] += 1
            index = next_free[split]
            used[split].add(index)
        units.append(
            WorkUnit(
                unit_id=f"{spec.scene_id}-c{c:04d}",
                split=split,
                shard_index=index,
                scene_id=spec.scene_id,
                scene_uri=spec.uri,
                first_pair=first,
                n_pairs=n,
                scene_up_axis=spec.up_axis,
                scene_scale=spec.scale,
                scene_shading=spec.shading,
                unit_key=key,
            )
        )
    return units


def previous_assignment(plan_file: Path) -> dict[str, tuple[str, int]]:
    """unit key -> (split, shard index) recorded in a corpus folder's plan.json ({} when none)."""
    import json

    try:
        units = json.loads(Path(plan_file).read_text()).get("units", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return {u["unit_key"]: (u["split"], int(u["shard_index"])) for u in units
            if isinstance(u, dict) and u.get("unit_key") and "split" in u and "shard_index" in u}

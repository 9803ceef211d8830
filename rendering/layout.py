"""Where every file of a run folder lives: the one place its layout is spelled out.

It sits in the bottom package so that every stage (rendering, training, evaluation, the pipeline)
can take a layout without importing a package above it. Path arithmetic, plus the listing of a
split's shards from the corpus manifest (the one listing every reader uses); nothing here writes.

```
<run>/corpus/     shards/<split>/pairs-%06d.tar, units/, manifest.parquet, corpus.json, plan.json, card/
<run>/pretrain/   <method>/model.pt, checkpoints/, metrics.jsonl, summary.json, figures/
<run>/eval/       <method>/<task>/seed-<s>.json
<run>/tables/     results.md, results.csv, results.png
<run>/scenes/     check.md, check.json: the scene check's report; cache/: one result per scene content
<run>/prefect/    the embedded Prefect server's home (results/ holds task results)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARD_PATTERN = "pairs-%06d.tar"
SHARD_GLOB = "pairs-*.tar"
MANIFEST_FILE = "manifest.parquet"
CORPUS_FILE = "corpus.json"
PLAN_FILE = "plan.json"
CARD_DIR = "card"
WEIGHTS_FILE = "model.pt"
TABLE_FILES = ("results.md", "results.csv", "results.png")


class CorpusError(RuntimeError):
    """The corpus is missing, empty or unreadable."""


class MissingShardsError(CorpusError):
    """The manifest lists shard files that are not on disk."""


@dataclass(frozen=True)
class CorpusLayout:
    """A pair corpus folder (inside a run folder, or on its own after `regenerate`)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def info(self) -> Path:
        """corpus.json: config, code version, counts, per-shard size and sha256."""
        return self.root / CORPUS_FILE

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def units_dir(self) -> Path:
        return self.root / "units"

    @property
    def card_dir(self) -> Path:
        return self.root / CARD_DIR

    @property
    def shards_root(self) -> Path:
        return self.root / "shards"

    def shards_dir(self, split: str) -> Path:
        return self.shards_root / split

    def manifest_shards(self) -> dict[str, list[str]]:
        """``{split: shard paths}`` as the manifest lists them (corpus-relative, sorted): the record
        of a finished corpus. A shard whose unit wrote no pair has no manifest row, so it is not
        listed (there is nothing in it to read). CorpusError when the manifest cannot be read."""
        import pyarrow.parquet as pq

        if not self.root.is_dir():
            raise CorpusError(f"corpus folder not found: {self.root}")
        if not self.manifest.is_file():
            raise CorpusError(f"no {MANIFEST_FILE} in {self.root}: the corpus is missing or incomplete")
        try:
            rows = pq.read_table(self.manifest, columns=["shard", "split"]).to_pydict()
        except Exception as exc:
            raise CorpusError(f"cannot read {self.manifest} (need columns 'shard' and 'split'): {exc}") from exc
        listed: dict[str, set[str]] = {}
        for shard, split in zip(rows["shard"], rows["split"]):
            if shard:  # an imported pose manifest has rows without shards
                listed.setdefault(split, set()).add(shard)
        return {split: sorted(names) for split, names in sorted(listed.items())}

    def split_shards(self, split: str) -> list[Path]:
        """The shard files of one split, in shard order, as the manifest lists them.

        The one listing of a split's shards: pretraining, evaluation and the cross-view monitor
        read it (verify checks the folder against corpus.json, which also lists empty shards).
        CorpusError when the manifest is missing or unreadable, lists no shard of ``split``, or
        lists shard files that are not on disk (named in the message).
        """
        names = self.manifest_shards().get(split, [])
        if not names:
            raise CorpusError(f"{self.manifest} lists no shards for split {split!r}")
        paths, missing = [], []
        for name in names:
            # corpus-relative paths; a bare file name (older manifests) lives in its split's folder
            for candidate in (self.root / name, self.shards_dir(split) / name):
                if candidate.is_file():
                    paths.append(candidate)
                    break
            else:
                missing.append(name)
        if missing:
            raise MissingShardsError(f"{len(missing)} shard(s) listed in {self.manifest} are missing, e.g. {missing[:3]}")
        return paths

    def all_shards(self) -> list[Path]:
        """Every shard file on disk (split folders in name order): what verify checks against
        the corpus record; readers list a split's shards with :meth:`split_shards`."""
        return sorted(self.shards_root.glob(f"*/{SHARD_GLOB}")) if self.shards_root.is_dir() else []

    def shard(self, split: str, index: int) -> Path:
        return self.shards_dir(split) / (SHARD_PATTERN % index)

    @staticmethod
    def shard_relpath(split: str, index: int) -> str:
        """The shard's path relative to the corpus folder, as manifests and corpus.json record it."""
        return f"shards/{split}/{SHARD_PATTERN % index}"


@dataclass(frozen=True)
class PretrainLayout:
    """One method's pretraining output folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def weights(self) -> Path:
        """Final weights: their presence (with summary.json) means the method is trained."""
        return self.root / WEIGHTS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def saved_config(self) -> Path:
        """The pretraining config the final weights were trained with."""
        return self.root / "pretrain_config.json"

    @property
    def launch_config(self) -> Path:
        return self.root / "launch_config.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def corpus(self) -> CorpusLayout:
        return CorpusLayout(self.root / "corpus")

    @property
    def corpus_dir(self) -> Path:
        return self.corpus.root

    def pretrain(self, method: str) -> PretrainLayout:
        return PretrainLayout(self.root / "pretrain" / method)

    def weights(self, method: str) -> Path:
        return self.pretrain(method).weights

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def result(self, method: str, task: str, seed: int) -> Path:
        """One (method, task, seed) evaluation result; its presence means the job is done."""
        return self.eval_dir / method / task / f"seed-{seed}.json"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def tables(self) -> dict[str, Path]:
        """The result tables by kind: markdown, csv, png."""
        return {kind: self.tables_dir / name for kind, name in zip(("markdown", "csv", "png"), TABLE_FILES)}

    @property
    def results_md(self) -> Path:
        return self.tables["markdown"]

    @property
    def scene_check_dir(self) -> Path:
        """The scene check's report (check.md, check.json) and its per-scene cache."""
        return self.root / "scenes"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def prefect_results(self) -> Path:
        """Prefect task results and cache records (the generate flow's unit cache)."""
        return self.prefect_home / "results"

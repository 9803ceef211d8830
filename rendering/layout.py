"""Where every file of a run folder lives: the one place its layout is spelled out.

It sits in the bottom package so that every stage (rendering, training, evaluation, the pipeline)
can take a layout without importing a package above it. Path arithmetic, plus the listing of a
split's shard files; nothing here writes.

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

    def split_shards(self, split: str) -> list[Path]:
        """The shard files of one split on disk, in shard order (empty when there are none).

        The one listing of a split's shard files; pretraining reads its shard list from the
        manifest instead, the record of a finished corpus (training.pair_loader.list_shards).
        """
        folder = self.shards_dir(split)
        return sorted(folder.glob(SHARD_GLOB)) if folder.is_dir() else []

    def all_shards(self) -> list[Path]:
        """Every split's shard files (split folders in name order)."""
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

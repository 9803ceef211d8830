"""What an evaluation run needs before any work starts: checkpoints, the backbone size, the
val split. Every check fails with a message naming the file and the fix, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.config import EvaluateConfig
from evaluation.data import val_shards
from evaluation.tables import result_path


class MissingCheckpointError(FileNotFoundError):
    """A method to evaluate has no final pretraining weights."""


def checkpoint_path(run_dir: Path, method: str) -> Path:
    """Final weights written by the pretrain stage (``<run_dir>/pretrain/<method>/model.pt``)."""
    return Path(run_dir) / "pretrain" / method / "model.pt"


@dataclass(frozen=True)
class EvalJob:
    method: str
    task: str
    seed: int
    checkpoint: str | None  # None for the random-init baseline
    result: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_checkpoints(run_dir: Path, methods: list[str]) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    missing = []
    for m in methods:
        if m == "none":
            found[m] = None
            continue
        path = checkpoint_path(run_dir, m)
        if not path.is_file():
            missing.append(f"{m}: {path}")
        found[m] = path
    if missing:
        raise MissingCheckpointError(
            "missing pretraining checkpoint(s) -- " + "; ".join(missing)
            + ". Run `crocopipe pretrain CONFIG` first (or drop the method from [evaluate] methods)."
        )
    return found


def plan_jobs(run_dir: Path, cfg: EvaluateConfig, corpus_dir: Path) -> list[EvalJob]:
    """Every (method, task, seed) of the config, after checking checkpoints and the val split."""
    val_shards(corpus_dir)  # raises MissingValSplitError
    checkpoints = check_checkpoints(run_dir, list(cfg.methods))
    return [
        EvalJob(m, t, s, None if checkpoints[m] is None else str(checkpoints[m]), str(result_path(run_dir, m, t, s)))
        for m in cfg.methods
        for t in cfg.tasks
        for s in cfg.seeds
    ]

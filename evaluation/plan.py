"""What an evaluation run needs before any work starts: checkpoints, the backbone size, the
val split. Every check fails with a message naming the file and the fix, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.config import CORPUS_TASKS, EvaluateConfig
from evaluation.tasks import CORPUS, external_dataset, get_task
from evaluation.val_split import val_shards
from rendering.layout import RunLayout
from training.methods import get_method


class StaleResultError(ValueError):
    """A result file was produced under different evaluation settings."""


class MissingCheckpointError(FileNotFoundError):
    """A method to evaluate has no final pretraining weights."""


@dataclass(frozen=True)
class EvalJob:
    method: str
    task: str
    seed: int
    checkpoint: str | None  # None for the random-init baseline
    result: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_checkpoints(layout: RunLayout, methods: list[str]) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    missing = []
    for m in methods:
        if not get_method(m).pretrained:
            found[m] = None
            continue
        path = layout.weights(m)
        if not path.is_file():
            missing.append(f"{m}: {path}")
        found[m] = path
    if missing:
        raise MissingCheckpointError(
            "missing pretraining checkpoint(s) -- " + "; ".join(missing)
            + ". Run `crocopipe pretrain CONFIG` first (or drop the method from [evaluate] methods)."
        )
    return found


def check_external_sources(cfg: EvaluateConfig) -> None:
    """Open the configured external datasets once so that a wrong path fails before any work."""
    checked: set[str] = set()
    for task in sorted(cfg.tasks):
        entry = get_task(task)
        if entry.source == CORPUS:
            continue
        dataset = external_dataset(entry)
        if dataset.name in checked and entry.variant is None:
            continue
        try:
            dataset.check(cfg.external_section(task), entry)
        except (OSError, ValueError) as exc:
            where = f"[evaluate.{dataset.name}]" + (f" (task {task})" if entry.variant is not None else "")
            raise ExternalDataError(f"{where}: {exc}") from exc
        checked.add(dataset.name)


class ExternalDataError(ValueError):
    """A configured external dataset is missing or unreadable."""


def plan_jobs(layout: RunLayout, cfg: EvaluateConfig) -> list[EvalJob]:
    """Every (method, task, seed) of the config, after checking checkpoints and the data."""
    if set(cfg.tasks) & set(CORPUS_TASKS):
        for source in cfg.corpora or [None]:  # raises MissingValSplitError naming the corpus
            val_shards(layout.corpus_dir if source is None else source.path)
    check_external_sources(cfg)
    checkpoints = check_checkpoints(layout, list(cfg.methods))
    return [
        EvalJob(m, t, s, None if checkpoints[m] is None else str(checkpoints[m]), str(layout.result(m, t, s)))
        for m in cfg.methods
        for t in cfg.tasks
        for s in cfg.seeds
    ]


def existing_result(job: EvalJob, fingerprint: str) -> dict | None:
    """The job's stored result if it is complete and was made with these settings; None if absent.

    A result made with other settings is never overwritten: the error says how to proceed.
    """
    import json

    path = Path(job.result)
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"evaluation result {path} is unreadable ({exc}); delete it to recompute") from exc
    if not isinstance(result, dict) or "metrics" not in result:
        raise ValueError(f"evaluation result {path} has no 'metrics'; delete it to recompute")
    if result.get("fingerprint") != fingerprint:
        raise StaleResultError(
            f"{path} was computed with other [evaluate] settings or backbone size (fingerprint "
            f"{result.get('fingerprint')} != {fingerprint}); move {Path(path).parents[2]} away to "
            "recompute, or restore the settings it was made with"
        )
    return result


def pending_jobs(jobs: list[EvalJob], cfg: EvaluateConfig, spec: dict) -> list[EvalJob]:
    return [j for j in jobs if existing_result(j, cfg.fingerprint(spec, j.task)) is None]


def tables_current(layout: RunLayout, jobs: list[EvalJob]) -> bool:
    """results.md/.csv/.png exist and are newer than every result file."""
    files = list(layout.tables.values())
    if not all(f.is_file() for f in files):
        return False
    newest = max(Path(j.result).stat().st_mtime_ns for j in jobs)
    return min(f.stat().st_mtime_ns for f in files) >= newest

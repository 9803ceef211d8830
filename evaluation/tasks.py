"""The evaluation tasks and the external datasets they read: the one place each is declared.

A task says what it predicts (its kind: the head, loss, prediction and metrics it uses), where its
data comes from (the corpus's held-out val scenes, or an external dataset), the metrics its table
shows and the published figures beside them; a training-free task names the measure that scores
it (a function of evaluation/zero_shot.py). An external dataset names its reader module's ``[evaluate.<name>]`` section model (its path
keys and required keys follow from it), how to check it before any work, how to build its
head-train / test arrays and its table note. Configs (EvaluateConfig has one section field per
dataset here), planning, jobs and tables read these tables; a name missing here is refused,
never silently taken for another.

No torch and no image libraries at import: the run config validates task names with this module;
the reader modules import h5py, scipy, OpenCV and torch only when their functions are called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, get_args

from pydantic import BaseModel

from evaluation.readers import nyuv2, sintel

CORPUS = "corpus"  # the source of tasks on the corpus's held-out val scenes

Metric = tuple[str, str, float]  # (metric key, column label, display scale)

DEPTH_METRICS: tuple[Metric, ...] = (
    ("abs_rel", "AbsRel", 1.0),
    ("rmse", "RMSE (m)", 1.0),
    ("delta1", "δ1 (%)", 100.0),
    ("delta1_median_scaled", "δ1 median-scaled (%)", 100.0),
)
FLOW_METRICS: tuple[Metric, ...] = (("epe", "EPE (px)", 1.0), ("bad1", ">1px (%)", 100.0), ("bad3", ">3px (%)", 100.0))
# Sintel: EPE also in the original 1024 x 436 pixels, the unit of the published figures.
SINTEL_METRICS: tuple[Metric, ...] = FLOW_METRICS + (("epe_original_px", "EPE (orig. px)", 1.0),)
POSE_METRICS: tuple[Metric, ...] = (
    ("rot_err_deg", "rot. err (°)", 1.0),
    ("trans_err_deg", "transl. dir. err (°)", 1.0),
    ("acc5", "acc@5° (%)", 100.0),
    ("acc10", "acc@10° (%)", 100.0),
)

# Zero-shot correspondence (evaluation/correspondence.py): recall within 1/2/4/8 patch widths (the
# table adds the pixels, which depend on the patch size) and median end-point error, for the
# encoder's and the cross-view decoder's features.
CORRESPONDENCE_METRICS: tuple[Metric, ...] = tuple(
    (f"{feat}_{key}", f"{name} {label}", scale)
    for feat, name in (("enc", "enc."), ("dec", "dec."))
    for key, label, scale in [(f"recall_{m}p", f"recall@{m}p (%)", 100.0) for m in (1, 2, 4, 8)]
    + [("median_epe", "median EPE (px)", 1.0)]
)
# Cross-view gain (training/cross_view.py): mismatched-reference loss minus true-reference loss.
CROSS_VIEW_METRICS: tuple[Metric, ...] = (
    ("gain", "gain", 1.0), ("relative_gain", "relative gain (%)", 100.0), ("loss_true", "loss, true ref.", 1.0),
)

# Published numbers, CroCo (Weinzaepfel et al., NeurIPS 2022, arXiv 2210.10716): fine-tuned
# monocular depth on NYUv2 (delta1, %) and optical flow on MPI-Sintel (EPE, clean / final),
# CroCo pretraining vs an MAE-pretrained encoder. Not measured by this project.
PAPER_SOURCE = "CroCo paper (arXiv 2210.10716)"


@dataclass(frozen=True)
class PaperFigure:
    label: str  # column label
    metric: str  # the metric key the figure is comparable to
    by_method: dict[str, str]  # method -> published value as printed


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # what it predicts: "depth", "flow", "pose", or a zero-shot measure
    source: str  # CORPUS, or the name of an external dataset (EXTERNAL_DATASETS)
    metrics: tuple[Metric, ...]
    paper: PaperFigure | None = None
    variant: str | None = None  # the dataset variant the task reads (Sintel's clean / final pass)
    # Set for a training-free task (no head, no protocol): the function of evaluation/zero_shot.py
    # that scores it, by name (that module imports this one, not the other way round).
    measure: str | None = None
    # [evaluate] keys the measure reads, hashed into its results' fingerprint; the options only
    # when set, so that results made before an option existed stay valid.
    measure_settings: tuple[str, ...] = ()
    measure_options: tuple[str, ...] = ()

    @property
    def zero_shot(self) -> bool:
        """No head is trained: no protocol, no head steps; the measure computes the metrics."""
        return self.measure is not None


@dataclass(frozen=True)
class ExternalDataset:
    """A real dataset read from files the user already has, in its official layout.

    Everything about it but its tasks lives in its reader module (evaluation/readers/): the
    section model, the check, the array builder and the table note that this entry names.
    """

    name: str  # its config section: [evaluate.<name>] (a field of EvaluateConfig, made from this table)
    section: type[BaseModel]  # that section's model: keys, defaults, checks; its Path keys are config-relative
    check: Callable[[Any, Task], None]  # open the files once; raise OSError / ValueError when unusable
    arrays: Callable[[Task, Any, int, float], tuple]  # (task, section, size, test_fraction) -> (train, test, how)
    note: Callable[[Task, str | None, float | None], str]  # the table's line on a task: (task, split, zero-flow EPE)
    fingerprint_drops: tuple[str, ...] = field(default=("max_pairs",))  # [evaluate] keys that do not apply

    @property
    def needs(self) -> str:
        """The section's required keys, for the error when a task needs the section."""
        return " and ".join(name for name, f in self.section.model_fields.items() if f.is_required())

    @property
    def path_keys(self) -> tuple[str, ...]:
        """Keys holding paths (resolved relative to the config file)."""
        return tuple(name for name, f in self.section.model_fields.items() if _holds_path(f.annotation))


def _holds_path(annotation: Any) -> bool:
    return annotation is Path or any(_holds_path(arg) for arg in get_args(annotation))


_EXTERNAL = (
    ExternalDataset("nyuv2", nyuv2.NYUv2Source, nyuv2.check, nyuv2.task_arrays, nyuv2.table_note),
    ExternalDataset("sintel", sintel.SintelSource, sintel.check, sintel.task_arrays, sintel.table_note),
)
EXTERNAL_DATASETS: dict[str, ExternalDataset] = {d.name: d for d in _EXTERNAL}


_NYU_DELTA1 = {"croco_v1": "85.6", "mae": "≈79"}
_TASKS = (
    Task("depth", "depth", CORPUS, DEPTH_METRICS, PaperFigure("paper: NYUv2 δ1 (%)", "delta1", _NYU_DELTA1)),
    Task("flow", "flow", CORPUS, FLOW_METRICS,
         PaperFigure("paper: Sintel EPE clean / final", "epe", {"croco_v1": "3.00 / 3.60", "mae": "4.63 / 5.24"})),
    Task("pose", "pose", CORPUS, POSE_METRICS),
    Task("correspondence", "correspondence", CORPUS, CORRESPONDENCE_METRICS, measure="measure_correspondence",
         measure_settings=("matching",), measure_options=("position_centred",)),
    Task("cross_view_gain", "cross_view_gain", CORPUS, CROSS_VIEW_METRICS, measure="measure_cross_view_gain"),
    Task("nyuv2", "depth", "nyuv2", DEPTH_METRICS, PaperFigure("paper: δ1 (%)", "delta1", _NYU_DELTA1)),
    Task("sintel_clean", "flow", "sintel", SINTEL_METRICS,
         PaperFigure("paper: EPE (orig. px)", "epe_original_px", {"croco_v1": "3.00", "mae": "4.63"}), "clean"),
    Task("sintel_final", "flow", "sintel", SINTEL_METRICS,
         PaperFigure("paper: EPE (orig. px)", "epe_original_px", {"croco_v1": "3.60", "mae": "5.24"}), "final"),
)
TASKS: dict[str, Task] = {t.name: t for t in _TASKS}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
CORPUS_TASKS: tuple[str, ...] = tuple(t.name for t in _TASKS if t.source == CORPUS)
EXTERNAL_TASKS: tuple[str, ...] = tuple(t.name for t in _TASKS if t.source != CORPUS)
ZERO_SHOT_TASKS: tuple[str, ...] = tuple(t.name for t in _TASKS if t.zero_shot)
HEAD_TASKS: tuple[str, ...] = tuple(t for t in CORPUS_TASKS if t not in ZERO_SHOT_TASKS)  # the default
KINDS: tuple[str, ...] = tuple(dict.fromkeys(t.kind for t in _TASKS))


def get_task(name: str) -> Task:
    """The registry entry of ``name``; ValueError naming the allowed tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASK_NAMES)}") from None


def external_dataset(task: Task) -> ExternalDataset:
    """The external dataset a task reads; ValueError naming the known ones otherwise."""
    try:
        return EXTERNAL_DATASETS[task.source]
    except KeyError:
        raise ValueError(f"task {task.name!r} reads {task.source!r}, not an external dataset; known: "
                         f"{', '.join(EXTERNAL_DATASETS)}") from None


def _check_registry() -> None:
    for t in _TASKS:
        if t.source != CORPUS and t.source not in EXTERNAL_DATASETS:
            raise RuntimeError(f"task {t.name!r} reads unknown source {t.source!r}; known: "
                               f"{', '.join((CORPUS, *EXTERNAL_DATASETS))}")


_check_registry()

"""Result tables: pretraining methods x downstream tasks, ours beside the paper's.

Inputs are the per-run result files ``<run_dir>/eval/<method>/<task>/seed-<s>.json``; outputs go
to ``<run_dir>/tables/``: ``results.md``, ``results.csv`` (one row per method x task x metric,
with mean, std across seeds, the seeds and the per-seed values), ``results.png`` (bar chart,
error bars = std across seeds, one dot per seed). The paper's published figures sit in their own, labelled columns.
Beside the external-dataset tasks (``nyuv2``, ``sintel_*``) they are the same measurement on the same
data, made with the paper's full-size models, schedules and fine-tuning; beside the corpus tasks
they come from other data and give the expected *ordering* only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.config import CORPUS_TASKS, TASK_KIND
from evaluation.tasks import ZERO_SHOT_TASKS
from evaluation.metrics import HIGHER_IS_BETTER
from evaluation.tasks import CORPUS, PAPER_SOURCE, TASKS, external_dataset
from rendering.atomic import atomic_path, atomic_write_text
from rendering.layout import RunLayout
from training.methods import METHODS

# Views of the task registry (evaluation.tasks): table columns and published figures per task.
TASK_METRICS: dict[str, list[tuple[str, str, float]]] = {name: list(t.metrics) for name, t in TASKS.items()}
PAPER: dict[str, dict[str, str]] = {
    name: {"label": t.paper.label, "metric": t.paper.metric, **t.paper.by_method}
    for name, t in TASKS.items() if t.paper is not None
}
METHOD_LABELS = {name: m.label for name, m in METHODS.items()}


@dataclass(frozen=True)
class Cell:
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    undefined: str = ""  # why the metric does not exist for this method (e.g. MAE has no reference view)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


def collect(run_dir: Path, methods: list[str], tasks: list[str], seeds: list[int]) -> dict[tuple[str, str, str], Cell]:
    """(method, task, metric) -> Cell over the seeds; raises naming any result file that is missing."""
    layout = RunLayout(run_dir)
    missing = [
        str(layout.result(m, t, s)) for m in methods for t in tasks for s in seeds
        if not layout.result(m, t, s).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{len(missing)} evaluation results missing, e.g. {missing[:3]}")
    cells: dict[tuple[str, str], Cell] = {}
    for m in methods:
        for t in tasks:
            results = []
            for s in seeds:
                path = layout.result(m, t, s)
                try:
                    result = json.loads(path.read_text())
                    result["metrics"]  # noqa: B018 - must exist
                    results.append(result)
                except (ValueError, KeyError) as exc:
                    raise ValueError(f"evaluation result {path} is unreadable: {exc}") from exc
            for key, _, _ in TASK_METRICS[t]:
                if all(key in r["metrics"] for r in results):
                    cells[(m, t, key)] = Cell(tuple(float(r["metrics"][key]) for r in results), tuple(seeds))
                else:
                    cells[(m, t, key)] = Cell((), tuple(seeds), _undefined_reason(results, key, t))
    return cells


def _undefined_reason(results: list[dict], key: str, task: str) -> str:
    """Why ``key`` is absent: the result's own statement, else an error naming the task and key."""
    for r in results:
        reasons = r.get("undefined") or {}
        why = reasons.get(key.split("_", 1)[0]) or reasons.get("all")
        if why:
            return why
    raise ValueError(f"task {task}: metric {key!r} missing from a result that does not say it is undefined")


def protocol_summary(cfg) -> str:
    """'probe', or e.g. 'probe (flow: finetune)' when some tasks override the protocol."""
    overrides = {t: p for t, p in cfg.protocol_overrides.items() if t in cfg.tasks and p != cfg.protocol}
    if not overrides:
        return cfg.protocol
    return f"{cfg.protocol} ({', '.join(f'{t}: {p}' for t, p in overrides.items())})"


def zero_flow_references(run_dir: Path, methods: list[str], tasks: list[str], seeds: list[int]) -> dict[str, float]:
    """EPE of predicting no motion on each flow task's test pairs (the same for every method):
    the level a flow head must beat. Results written before this reference existed have none."""
    out = {}
    for t in (t for t in tasks if TASK_KIND[t] == "flow"):
        metrics = json.loads(RunLayout(run_dir).result(methods[0], t, seeds[0]).read_text())["metrics"]
        if "zero_flow_epe" in metrics:
            out[t] = float(metrics["zero_flow_epe"])
    return out


def _fmt(cell: Cell, scale: float) -> str:
    if cell.undefined:
        return "n/a"
    digits = 1 if scale == 100.0 else 3
    text = f"{cell.mean * scale:.{digits}f}"
    if len(cell.values) > 1:
        text += f" ± {cell.std * scale:.{digits}f}"
    return text


def column_label(task: str, key: str, label: str, context: dict) -> str:
    """'task: label ↑' (or ↓: the metric's direction), with a correspondence threshold in pixels."""
    px = context.get("thresholds_px", {}).get(key.split("_", 1)[-1]) if TASK_KIND[task] == "correspondence" else None
    if px is not None:
        label = label.replace("p (%)", f"p = {px:g} px (%)")
    return f"{task}: {label} {'↑' if HIGHER_IS_BETTER[key] else '↓'}"


def markdown_table(cells: dict, methods: list[str], tasks: list[str], seeds: list[int], context: dict) -> str:
    header = ["method"]
    for t in tasks:
        header += [column_label(t, key, label, context) for key, label, _ in TASK_METRICS[t]]
        if t in PAPER:
            header.append(PAPER[t]["label"])
    lines = [
        "# Downstream evaluation",
        "",
        f"Run: `{context.get('run_dir', '')}` — protocol **{context.get('protocol', '?')}**, "
        f"{context.get('steps', '?')} head steps, seeds {seeds} (mean ± std across seeds"
        f"{'' if len(seeds) > 1 else '; one seed: no variance'}).",
        "",
        *_data_notes(tasks, context),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    best = _best(cells, methods, tasks)
    for m in methods:
        row = [METHOD_LABELS.get(m, m)]
        for t in tasks:
            for key, _, scale in TASK_METRICS[t]:
                text = _fmt(cells[(m, t, key)], scale)
                row.append(f"**{text}**" if best.get((t, key)) == m and len(methods) > 1 else text)
            if t in PAPER:
                row.append(PAPER[t].get(m, "—"))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"Bold: best of ours per column (none on ties). Columns starting with 'paper:' are published figures from the "
        f"{PAPER_SOURCE} (paper-size models, long pretraining, fine-tuned; MAE row = MAE-pretrained encoder), "
        "**not** measured by this run. Beside nyuv2 / sintel_* they are the same measurement on the same "
        "data; beside the corpus tasks (depth, flow) they come from NYUv2 / Sintel and show the expected "
        "ordering only. '—' = not reported there. ↑ / ↓: higher / lower is better.",
    ]
    undefined = sorted({(m, t, c.undefined) for (m, t, _), c in cells.items() if c.undefined})
    if undefined:
        lines += ["", "n/a = undefined, not zero: " + "; ".join(
            f"{METHOD_LABELS.get(m, m)} on {t}: {why}" for m, t, why in undefined) + "."]
    if "correspondence" in tasks and context.get("bins"):
        lines += ["", *bin_tables(context["bins"], methods)]
    return "\n".join(lines) + "\n"


BIN_METRIC = "recall_2p"  # the recall shown per bin


def bin_tables(bins: dict, methods: list[str]) -> list[str]:
    """Correspondence recall per co-visibility bin and per rotation bin (mean over seeds)."""
    lines = [f"Correspondence by pair (at the evaluation crop): {BIN_METRIC.replace('_', '@')} (%), mean over seeds, "
             "[points in the bin]."]
    for axis, title in (("covis", "co-visibility"), ("rotation_deg", "relative rotation (°)")):
        labels = next(iter(bins.values()))["enc"][0][axis].keys()
        lines += ["", f"| method / features | {' | '.join(f'{title} {b}' for b in labels)} |",
                  "|" + "---|" * (len(labels) + 1)]
        for m in methods:
            for feat, per_bin in (bins.get(m) or {}).items():
                row = []
                for b in labels:
                    seeds = [sb[axis][b] for sb in per_bin]
                    vals = [x[BIN_METRIC] for x in seeds if x.get("n_points")]
                    row.append(f"{100 * float(np.mean(vals)):.1f} [{seeds[0]['n_points']}]" if vals else "— [0]")
                lines.append(f"| {METHOD_LABELS.get(m, m)} / {feat} | " + " | ".join(row) + " |")
    return lines


def correspondence_context(run_dir: Path, methods: list[str], tasks: list[str], seeds: list[int]) -> dict:
    """Thresholds in px, chance recall and per-bin results of the correspondence results (if any)."""
    if "correspondence" not in tasks:
        return {}
    first = json.loads(RunLayout(run_dir).result(methods[0], "correspondence", seeds[0]).read_text())
    bins: dict[str, dict[str, list]] = {}
    for m in methods:
        for s in seeds:
            r = json.loads(RunLayout(run_dir).result(m, "correspondence", s).read_text())
            for feat, per in r.get("bins", {}).items():
                bins.setdefault(m, {}).setdefault(feat, []).append(per)
    chance = {k.removeprefix("enc_chance_"): v for k, v in first["metrics"].items() if k.startswith("enc_chance_")}
    return {"thresholds_px": first.get("thresholds_px", {}), "chance_recall": chance, "bins": bins,
            "matching": first.get("matching", "one_way"),
            "zero_motion_epe": first["metrics"].get("enc_zero_motion_median_epe"),
            "zero_motion_recall": {k.removeprefix("enc_zero_motion_"): v for k, v in first["metrics"].items()
                                   if k.startswith("enc_zero_motion_recall")}}


def _data_notes(tasks: list[str], context: dict) -> list[str]:
    """One line per kind of test data in the table: where it comes from and how it is scored."""
    data = context.get("data", {})
    zero = context.get("zero_flow_epe", {})
    notes = []
    corpus = [t for t in tasks if t in CORPUS_TASKS and t not in ZERO_SHOT_TASKS]
    if "correspondence" in tasks:
        px = context.get("thresholds_px", {})
        chance = context.get("chance_recall", {})
        notes.append(
            "- correspondence (zero-shot, no head trained; protocol of El Banani et al., \"Probing the 3D Awareness "
            "of Visual Foundation Models\", CVPR 2024): every val pair in both directions; frozen per-patch features "
            "of both views (enc. = encoder output, dec. = the cross-view decoder's last block, view 1 conditioned on "
            f"view 2 and vice versa), cosine {context.get('matching', 'one_way').replace('_', '-')} nearest "
            "neighbours from view 1's patch centres to view 2's; ground truth from depth + poses (covisible patch "
            "centres only). recall@kp = match within k patch widths of the true point"
            + (" (" + ", ".join(f"{k.removeprefix('recall_')} = {v:g} px" for k, v in px.items()) + ")" if px else "")
            + (f"; a random match reaches {', '.join(f'{100 * v:.1f}%' for v in chance.values())}" if chance else "")
            + (f"; matching every point to its own position (zero motion) gives median EPE "
               f"{context['zero_motion_epe']:.2f} px" if context.get("zero_motion_epe") is not None else "")
            + (f" and recall {', '.join(f'{100 * v:.1f}%' for v in context['zero_motion_recall'].values())}"
               if context.get("zero_motion_recall") else "")
            + " (features that carry absolute position, e.g. sin-cos embeddings, lean towards that prior)"
            + ". Deterministic given the weights: the seed changes only the random-init baseline."
        )
    if "cross_view_gain" in tasks:
        notes.append(
            "- cross_view_gain (zero-shot): on every val pair, the pretext loss (normalised-pixel MSE on masked "
            "patches) with a mismatched reference view (another pair's view 2) minus the loss with the true "
            "reference, same views 1 and masks (the seed draws the masks). > 0: the model uses the second view; "
            "relative gain = gain / mismatched loss."
        )
    if corpus:
        how = ", ".join(sorted({data.get(t, "scene") for t in corpus}))
        notes.append(
            f"- {', '.join(corpus)}: held-out val scenes of this run's corpus ({how} split into head-train/test). "
            "Depth: AbsRel, RMSE, δ1 at metric scale; 'median-scaled' after per-image median scaling (the SILog "
            "loss is mostly scale-invariant; the JSON files hold every median-scaled metric). Flow on covisible "
            "pixels" + (f" (predicting zero flow gives EPE {zero['flow']:.3f} px)" if "flow" in zero else "")
            + ". Pose: median errors; acc = both errors below the threshold."
        )
    for t in (TASKS[t] for t in tasks if TASKS[t].source != CORPUS):
        notes.append(external_dataset(t).note(t, data.get(t.name), zero.get(t.name)))
    return notes


def _best(cells: dict, methods: list[str], tasks: list[str]) -> dict[tuple[str, str], str]:
    out = {}
    for t in tasks:
        for key, _, _ in TASK_METRICS[t]:
            vals = {m: cells[(m, t, key)].mean for m in methods if not cells[(m, t, key)].undefined}
            if len(vals) < 2:
                continue
            pick = max if HIGHER_IS_BETTER[key] else min
            winner = pick(vals, key=vals.get)
            if sum(math.isclose(v, vals[winner], rel_tol=1e-9, abs_tol=1e-12) for v in vals.values()) == 1:
                out[(t, key)] = winner  # no bold for ties
    return out


def csv_rows(cells: dict, methods: list[str], tasks: list[str]) -> list[dict]:
    rows = []
    for m in methods:
        for t in tasks:
            for key, label, _ in TASK_METRICS[t]:
                c = cells[(m, t, key)]
                rows.append({
                    "method": m, "task": t, "metric": key, "label": label,
                    "higher_is_better": HIGHER_IS_BETTER[key], "mean": c.mean, "std": c.std,
                    "n_seeds": len(c.values), "seeds": " ".join(map(str, c.seeds)), "undefined": c.undefined,
                    "values": " ".join(f"{v:.6g}" for v in c.values),
                    "paper": PAPER[t].get(m, "") if t in PAPER and PAPER[t]["metric"] == key else "",
                    "paper_metric": PAPER[t]["label"] if t in PAPER and PAPER[t]["metric"] == key else "",
                })
    return rows


def chart_title(context: dict, seeds: list[int]) -> str:
    """Run, protocol, head steps and seeds: what a reader needs to place the figure."""
    run = Path(str(context.get("run_dir", ""))).name or "?"
    spread = "mean ± std across seeds" if len(seeds) > 1 else "one seed: no spread"
    return (f"run {run} — protocol {context.get('protocol', '?')}, {context.get('steps', '?')} head steps, "
            f"seeds {', '.join(map(str, seeds))} ({spread})")


def bar_chart(cells: dict, methods: list[str], tasks: list[str], path: Path, context: dict | None = None,
              seeds: list[int] | None = None) -> None:
    """One panel per metric; seed spread only where there are several seeds; dashed reference
    lines for random init ("none") and, on flow EPE, for predicting zero flow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    context = context or {}
    zero = context.get("zero_flow_epe", {})
    metrics = [(t, key, label, scale) for t in tasks for key, label, scale in TASK_METRICS[t]]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows + 0.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (t, key, label, scale) in zip(axes.flat, metrics):
        means = []
        for i, m in enumerate(methods):
            cell = cells[(m, t, key)]
            if cell.undefined:
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                continue
            several = len(cell.values) > 1  # seed spread only where there are seeds
            ax.bar(i, cell.mean * scale, yerr=cell.std * scale if several else None, capsize=4 if several else 0,
                   color=colours(i), alpha=0.8)
            means.append(cell.mean * scale)
            if several:  # every seed's value as a dot: the spread behind the mean
                ax.scatter([i] * len(cell.values), [v * scale for v in cell.values], s=12, color="black", zorder=3)
        ax.set_xticks(range(len(methods)), [METHOD_LABELS.get(m, m).split(" (")[0] for m in methods], rotation=20)
        references = []
        if "none" in methods and len(methods) > 1 and not cells[("none", t, key)].undefined:
            references.append(("random init", cells[("none", t, key)].mean * scale, "grey", ":"))
        if key == "epe" and t in zero:
            references.append((f"zero flow ({zero[t]:.2f})", zero[t] * scale, "black", "--"))
        for name, value, colour, style in references:
            ax.axhline(value, color=colour, linestyle=style, linewidth=1.2, label=name)
        if references:
            ax.legend(fontsize=7, loc="best")
        values = means + [v for _, v, _, _ in references]
        if values and max(abs(v) for v in values) == 0.0:
            ax.set_ylim(0.0, 1.0)
            ax.text(0.5, 0.5, "all 0", transform=ax.transAxes, ha="center", va="center", color="grey")
        arrow = "↑ better" if HIGHER_IS_BETTER[key] else "↓ better"
        ax.set_title(f"{t}: {label} ({arrow})", fontsize=10)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if seeds is not None:
        fig.suptitle(chart_title(context, seeds), fontsize=10)
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight()))  # room for the title
    else:
        fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


_atomic_text = atomic_write_text


def write_tables(
    run_dir: Path, methods: list[str], tasks: list[str], seeds: list[int], context: dict | None = None
) -> dict:
    """Write results.md / .csv / .png under <run_dir>/tables; returns paths and the CSV rows."""
    run_dir = Path(run_dir)
    context = {"run_dir": str(run_dir), **(context or {})}
    cells = collect(run_dir, methods, tasks, seeds)
    context.setdefault("zero_flow_epe", zero_flow_references(run_dir, methods, tasks, seeds))
    for key, value in correspondence_context(run_dir, methods, tasks, seeds).items():
        context.setdefault(key, value)
    files = RunLayout(run_dir).tables
    files["markdown"].parent.mkdir(parents=True, exist_ok=True)
    md = markdown_table(cells, methods, tasks, seeds, context)
    _atomic_text(files["markdown"], md)
    rows = csv_rows(cells, methods, tasks)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    _atomic_text(files["csv"], buf.getvalue())
    bar_chart(cells, methods, tasks, files["png"], context, seeds)
    return {
        **{kind: str(path) for kind, path in files.items()},
        "markdown_text": md,
        "rows": rows,
    }

"""The dataset card in ``<corpus>/card/``: stats.md, overlap histogram and contact sheet (PNG).

It is what a person looks at to judge a corpus before training on it: how many pairs per split,
how much the views overlap, why candidates were rejected, and what the images look like.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa

from rendering.layout import CARD_DIR
from rendering.shards import atomic_write_bytes, read_shard

STATS_FILE = "stats.md"
HISTOGRAM_FILE = "overlap_histogram.png"
CONTACT_SHEET_FILE = "contact_sheet.png"


def _quantiles(values: np.ndarray) -> str:
    if values.size == 0:
        return "n/a"
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return " / ".join(f"{v:.3f}" for v in q)


def _producer(info: dict) -> str:
    """What made the pairs: the renderer (rendered corpora) or the mined capture datasets."""
    config = info["config"]
    if info.get("kind") == "mined":
        datasets = sorted({s["dataset"] for s in info.get("sequences", [])})
        size = f"{config['width']}x{config['height']} px" if config.get("width") else "depth-map size"
        return (f"- mined from captures ({', '.join(datasets) or 'none'}), {size}, crops {config.get('crops')}, "
                f"images {config['image_format']}")
    return (f"- renderer backend: {config['backend']}, "
            f"{config['sampler'].get('width', '?')}x{config['sampler'].get('height', '?')} px, "
            f"images {config['image_format']}")


def stats_markdown(info: dict, table: pa.Table) -> str:
    counts = info["counts"]
    lines = [
        f"# Pair corpus {info['corpus_id']}",
        "",
        f"- code version: `{info['code_version']}`, schema version {info['schema_version']}",
        f"- config hash: `{info['config_hash']}`",
        _producer(info),
        "",
        "| split | scenes | pairs | shards |",
        "| --- | ---: | ---: | ---: |",
    ]
    for split in ("train", "val"):
        shards = sum(1 for s in info["shards"] if s["split"] == split)
        lines.append(f"| {split} | {counts['scenes'][split]} | {counts['pairs'][split]} | {shards} |")
    lines += [
        "",
        f"Pairs requested {counts['pairs_requested']}, written {counts['pairs_total']}, "
        f"failed {counts['failed_pairs']}; candidate views rendered: {counts['attempts']}.",
        "",
        "## Co-visibility (min / q25 / median / q75 / max)",
        "",
    ]
    for split in ("train", "val"):
        values = _column(table, "covis", split)
        lines.append(f"- {split}: {_quantiles(values)}")
    lines += ["", "## Thresholds", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(info["thresholds"].items())] or ["- (none recorded)"]
    skipped = info.get("skipped_scenes") or []
    if skipped:
        lines += ["", f"## Skipped scenes ({len(skipped)}, refused by the scene check)", ""]
        lines += [f"- `{s['scene_id']}` ({s['uri']}): {s['reason']}" for s in skipped]
    lines += ["", "## Rejected candidates by reason", ""]
    lines += [f"- {k}: {v}" for k, v in info["rejections"].items()] or ["- none"]
    lines += ["", f"![overlap histogram]({HISTOGRAM_FILE})", "", f"![contact sheet]({CONTACT_SHEET_FILE})", ""]
    return "\n".join(lines)


def _column(table: pa.Table, name: str, split: str) -> np.ndarray:
    if table.num_rows == 0 or name not in table.column_names:
        return np.zeros(0)
    splits = np.asarray(table.column("split").to_pylist())
    values = np.asarray(table.column(name).to_pylist(), dtype=np.float64)
    return values[splits == split]


DIRECTIONS = (("covis_1to2", "view 1 seen by view 2"), ("covis_2to1", "view 2 seen by view 1"),
              ("covis", "pair score (min)"))


def histogram_png(info: dict, table: pa.Table) -> bytes:
    """One panel per split: both directions and the pair score, the min_covis threshold, and the
    rejection counts of the candidates that did not make it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("train", "val") if _column(table, "covis", s).size] or ["train"]
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4.0), dpi=100, squeeze=False)
    bins = np.linspace(0.0, 1.0, 41)
    min_covis = info["thresholds"].get("min_covis")
    for ax, split in zip(axes.flat, splits):
        for column, label in DIRECTIONS:
            values = _column(table, column, split)
            if values.size:
                filled = column == "covis"
                ax.hist(values, bins=bins, histtype="stepfilled" if filled else "step", alpha=0.35 if filled else 1.0,
                        linewidth=1.5, label=f"{label}")
        if isinstance(min_covis, (int, float)):
            ax.axvline(min_covis, color="k", linestyle="--", linewidth=1, label=f"min_covis {min_covis}")
        pairs = info["counts"]["pairs"].get(split, 0)
        scenes = info["counts"].get("scenes", {}).get(split, "?")
        ax.set_title(f"{split}: {pairs} pairs from {scenes} scenes", fontsize=10)
        ax.set_xlabel("co-visibility (fraction of H*W)")
        ax.set_ylabel("pairs")
        ax.legend(loc="upper left", fontsize=8)
    rejected = ", ".join(f"{k} {v}" for k, v in info.get("rejections", {}).items()) or "none"
    fig.suptitle(f"Pair overlap of corpus {info.get('corpus_id', '?')} — rejected candidates: {rejected}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def contact_sheet_png(corpus_dir: Path, info: dict, max_scenes: int = 24) -> bytes:
    """The first pair of every scene (up to ``max_scenes``): RGB, depth and co-visibility overlay."""
    import cv2

    from rendering.contact_sheet import contact_sheet, sample_item

    wanted = sum(len(ids) for ids in info.get("scenes", {}).values()) or max_scenes
    entries, seen = [], set()
    for shard in info["shards"]:
        if len(entries) >= min(wanted, max_scenes):
            break
        if shard["samples"] == 0:
            continue
        sample = next(read_shard(Path(corpus_dir) / shard["path"]))
        scene = sample["meta"].get("scene_id", sample["__key__"])
        if scene in seen:
            continue
        seen.add(scene)
        entries.append(sample_item(sample, f"{sample['__key__']} ({shard['split']})"))
    sheet = contact_sheet(entries) if entries else np.full((32, 256, 3), 255, np.uint8)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(sheet[:, :, ::-1]))
    if not ok:
        raise ValueError("could not encode the contact sheet")
    return buf.tobytes()


def write_card(corpus_dir: Path, info: dict, table: pa.Table) -> Path:
    card = Path(corpus_dir) / CARD_DIR
    atomic_write_bytes(card / HISTOGRAM_FILE, histogram_png(info, table))
    atomic_write_bytes(card / CONTACT_SHEET_FILE, contact_sheet_png(corpus_dir, info))
    atomic_write_bytes(card / STATS_FILE, stats_markdown(info, table).encode("utf-8"))
    return card

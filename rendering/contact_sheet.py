"""Contact sheets: a grid of pairs (image 1 | image 2 | colourised depth 1 | co-visibility of
view 1 in view 2) with captions.

For people to look at a corpus or a ``render-pairs`` run at a glance; numbers live in meta.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rendering.atomic import atomic_path
from rendering.pair import CovisScores, PairRecord

PANEL_HEIGHT = 128
CAPTION_HEIGHT = 28
GAP = 4
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class SheetItem:
    img1: np.ndarray
    img2: np.ndarray
    depth1: np.ndarray | None
    caption: str
    overlay: np.ndarray | None = None  # RGB: view 1 with the pixels view 2 does not see dimmed red


def _scores_text(scores: CovisScores | float | None) -> str:
    if scores is None:
        return ""
    if isinstance(scores, CovisScores):
        return f"covis {scores.score:.2f} (1>2 {scores.one_to_two_hw:.2f}, 2>1 {scores.two_to_one_hw:.2f})"
    return f"covis {float(scores):.2f}"


def covisibility_overlay(img1: np.ndarray, depth1: np.ndarray, K1, pose1, depth2: np.ndarray, K2, pose2) -> np.ndarray:
    """View 1 with the pixels that view 2 also sees in their own colours and the others dimmed
    and tinted red (no depth: black): where the pair overlaps, at a glance."""
    from rendering.covisibility import covisible_pixels

    depth1 = np.asarray(depth1, np.float32)
    covisible, _, _, _ = covisible_pixels(depth1, np.asarray(K1, np.float64), np.asarray(pose1, np.float64),
                                          np.asarray(depth2, np.float32), np.asarray(K2, np.float64),
                                          np.asarray(pose2, np.float64))
    out = np.asarray(img1, np.float32).copy()
    hidden = ~covisible
    out[hidden] = out[hidden] * 0.3 + np.array([150.0, 0.0, 0.0], np.float32)
    out[depth1 <= 0] = 0.0
    return np.clip(out, 0, 255).astype(np.uint8)


def sample_item(sample: dict, label: str = "") -> SheetItem:
    """A decoded shard sample (rendering.shards.read_shard) with depth and co-visibility panels."""
    meta = sample["meta"]
    overlay = covisibility_overlay(sample["img1"], sample["depth1"], meta["K1"], meta["cam2world1"],
                                   sample["depth2"], meta["K2"], meta["cam2world2"])
    caption = (f"{label or sample['__key__']}\ncovis {meta['covis']:.2f} "
               f"(1>2 {meta['covis_1to2']:.2f}, 2>1 {meta['covis_2to1']:.2f})")
    return SheetItem(sample["img1"], sample["img2"], sample["depth1"], caption, overlay)


def _item(entry: object, position: int) -> SheetItem:
    """Accept a SheetItem, a PairRecord, ``(img1, img2, caption)`` or ``(img1, img2, scores, label)``."""
    if isinstance(entry, SheetItem):
        return entry
    if isinstance(entry, PairRecord):
        caption = f"{entry.scene_id} #{entry.pair_index}\n{_scores_text(entry.covis)}"
        return SheetItem(entry.img1, entry.img2, entry.depth1, caption)
    if isinstance(entry, (tuple, list)) and len(entry) == 3 and isinstance(entry[2], str):
        return SheetItem(entry[0], entry[1], None, entry[2])
    if isinstance(entry, (tuple, list)) and len(entry) == 4 and isinstance(entry[3], str):
        return SheetItem(entry[0], entry[1], None, f"{entry[3]}\n{_scores_text(entry[2])}".rstrip())
    raise ValueError(
        f"contact sheet entry {position}: expected a PairRecord, (img1, img2, caption) or "
        f"(img1, img2, scores, label), got {type(entry).__name__}"
    )


def _rgb_panel(image: np.ndarray, what: str) -> Image.Image:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise ValueError(f"{what}: expected an RGB uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}")
    return _fit(Image.fromarray(arr, "RGB"))


def _fit(image: Image.Image) -> Image.Image:
    width = max(1, round(image.width * PANEL_HEIGHT / image.height))
    return image.resize((width, PANEL_HEIGHT), Image.Resampling.BILINEAR)


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """z-depth -> RGB uint8 with the 'turbo' colour map over the valid range; invalid pixels black."""
    from matplotlib import colormaps  # matplotlib.pyplot is not needed (and not imported)

    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros(depth.shape + (3,), dtype=np.uint8)
    if valid.any():
        lo, hi = float(depth[valid].min()), float(depth[valid].max())
        scaled = (depth[valid] - lo) / max(hi - lo, 1e-6)
        out[valid] = (colormaps["turbo"](scaled)[:, :3] * 255).astype(np.uint8)
    return out


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1 has a single bitmap size
        return ImageFont.load_default()


def _cell(item: SheetItem, position: int) -> Image.Image:
    panels = [_rgb_panel(item.img1, f"entry {position} img1"), _rgb_panel(item.img2, f"entry {position} img2")]
    if item.depth1 is not None:
        panels.append(_fit(Image.fromarray(colorize_depth(item.depth1), "RGB")))
    if item.overlay is not None:
        panels.append(_rgb_panel(item.overlay, f"entry {position} co-visibility overlay"))
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    cell = Image.new("RGB", (width, PANEL_HEIGHT + CAPTION_HEIGHT), BACKGROUND)
    x = 0
    for panel in panels:
        cell.paste(panel, (x, 0))
        x += panel.width + GAP
    ImageDraw.Draw(cell).multiline_text((2, PANEL_HEIGHT + 1), item.caption, fill=(0, 0, 0), font=_font(), spacing=1)
    return cell


def contact_sheet(entries: Sequence[object], columns: int = 2) -> np.ndarray:
    """The sheet as an RGB uint8 array; ``columns`` pairs per row."""
    if not entries:
        raise ValueError("contact sheet needs at least one pair")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    cells = [_cell(_item(e, i), i) for i, e in enumerate(entries)]
    cell_w = max(c.width for c in cells)
    cell_h = max(c.height for c in cells)
    columns = min(columns, len(cells))
    rows = -(-len(cells) // columns)
    sheet = Image.new(
        "RGB", (columns * cell_w + (columns + 1) * GAP * 2, rows * cell_h + (rows + 1) * GAP * 2), BACKGROUND
    )
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        sheet.paste(cell, (GAP * 2 + c * (cell_w + GAP * 2), GAP * 2 + r * (cell_h + GAP * 2)))
    return np.asarray(sheet)


def write_contact_sheet(entries: Sequence[object], path: str | Path, columns: int = 2) -> Path:
    """Write the sheet as PNG, atomically (a temporary file renamed into place)."""
    path = Path(path)
    image = Image.fromarray(contact_sheet(entries, columns), "RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path

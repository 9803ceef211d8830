"""Zero-shot dense correspondence from frozen features (numpy only).

The protocol of El Banani et al., "Probing the 3D Awareness of Visual Foundation Models"
(CVPR 2024), on the corpus's held-out pairs: no head is trained, so the result has no seed noise
from head training and costs seconds.

* Queries: the centre pixel of every patch of view 1 (pixel ``(r*p + p//2, c*p + p//2)`` of patch
  ``(r, c)``, ``p`` = patch size) that is covisible in view 2 (the covisible-pixel routine of
  rendering.covisibility, through the flow ground truth).
* Candidates: the same pixel of every patch of view 2. A query's match is the candidate whose
  feature has the highest cosine similarity with the query's (``one_way``); with ``mutual`` the
  match only counts when the query is also its candidate's best match (a non-mutual query is a
  miss).
* Ground truth: where the query's surface point lands in view 2 (pixel centre + exact flow).
* Metrics: recall = fraction of covisible queries whose match lies within ``t`` pixels of the
  ground truth (``t`` = 1, 2, 4, 8 patch widths), median end-point error over matched queries,
  the recall that a random match would reach on the same queries (chance level), and the median
  error of matching every query to the same patch of view 2 (zero motion). Also binned
  by the pair's co-visibility and by its relative rotation angle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PATCH_MULTIPLES: tuple[int, ...] = (1, 2, 4, 8)  # thresholds, in patch widths
MATCHING = ("one_way", "mutual")
DEFAULT_COVIS_BINS: tuple[float, ...] = (0.0, 0.4, 0.6, 0.8, 1.0)
DEFAULT_ROTATION_BINS_DEG: tuple[float, ...] = (0.0, 15.0, 30.0, 60.0, 180.0)


def recall_key(multiple: int) -> str:
    return f"recall_{multiple}p"


@dataclass(frozen=True)
class PatchQueries:
    """Query/candidate pixels of a ``grid`` x ``grid`` patch layout and the ground truth of N pairs."""

    centres: np.ndarray  # (G*G, 2) continuous (x, y) of each patch's query pixel, same in both views
    target: np.ndarray  # (N, G*G, 2) ground-truth landing point in view 2; NaN where not covisible
    valid: np.ndarray  # (N, G*G) bool: the query is covisible


def patch_queries(flow: np.ndarray, valid: np.ndarray, patch: int) -> PatchQueries:
    """Queries at the patch centres of (N, H, W, 2) flow fields with covisible masks (N, H, W)."""
    flow = np.asarray(flow)
    valid = np.asarray(valid, dtype=bool)
    if flow.ndim != 4 or flow.shape[-1] != 2 or valid.shape != flow.shape[:3]:
        raise ValueError(f"patch_queries: expected flow (N, H, W, 2) and mask (N, H, W), got {flow.shape} and {valid.shape}")
    n, height, width, _ = flow.shape
    if height != width or height % patch:
        raise ValueError(f"patch_queries: image {width}x{height} is not a square multiple of patch {patch}")
    grid = height // patch
    idx = np.arange(grid) * patch + patch // 2
    rows, cols = np.meshgrid(idx, idx, indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    centres = np.stack([cols + 0.5, rows + 0.5], axis=-1).astype(np.float64)
    f = flow[:, rows, cols].astype(np.float64)
    ok = valid[:, rows, cols] & np.all(np.isfinite(f), axis=-1)
    target = np.where(ok[..., None], centres[None] + f, np.nan)
    return PatchQueries(centres, target, ok)


def _normalised(feat: np.ndarray) -> np.ndarray:
    feat = np.asarray(feat, dtype=np.float64)
    return feat / np.maximum(np.linalg.norm(feat, axis=-1, keepdims=True), 1e-12)


def match(feat1: np.ndarray, feat2: np.ndarray, matching: str) -> tuple[np.ndarray, np.ndarray]:
    """(best candidate per query (M,), whether the match counts (M,)) for one pair's (M, C) and (K, C)."""
    if matching not in MATCHING:
        raise ValueError(f"unknown matching {matching!r}; allowed: {', '.join(MATCHING)}")
    sim = _normalised(feat1) @ _normalised(feat2).T
    best = np.argmax(sim, axis=1)
    if matching == "one_way":
        return best, np.ones(len(best), dtype=bool)
    back = np.argmax(sim, axis=0)
    return best, back[best] == np.arange(len(best))


@dataclass
class PairErrors:
    """Per covisible query of one pair: end-point error (inf when the match does not count) and
    the fraction of candidates within each threshold of the ground truth (chance of a random match)."""

    error: np.ndarray  # (Q,)
    chance: np.ndarray  # (Q, T)
    zero_motion: np.ndarray  # (Q,) error of matching each query to the same patch of view 2 (zero flow)


def pair_errors(
    feat1: np.ndarray, feat2: np.ndarray, queries: PatchQueries, i: int, thresholds_px: np.ndarray, matching: str
) -> PairErrors:
    keep = queries.valid[i]
    best, counts = match(feat1[keep], feat2, matching)
    target = queries.target[i][keep]
    error = np.linalg.norm(queries.centres[best] - target, axis=-1)
    error = np.where(counts, error, np.inf)
    dist = np.linalg.norm(target[:, None, :] - queries.centres[None, :, :], axis=-1)  # (Q, K)
    chance = (dist[:, :, None] <= thresholds_px[None, None, :]).mean(axis=1)
    zero_motion = np.linalg.norm(queries.centres[keep] - target, axis=-1)
    return PairErrors(error, chance, zero_motion)


def summarise(errors: list[PairErrors], multiples: tuple[int, ...], patch: int) -> dict[str, float]:
    """Recall per threshold, chance recall, median EPE and counts, pooled over the queries of ``errors``."""
    if not errors:
        return {"n_points": 0, "n_pairs": 0}
    err = np.concatenate([e.error for e in errors])
    chance = np.concatenate([e.chance for e in errors])
    out: dict[str, float] = {}
    for j, m in enumerate(multiples):
        out[recall_key(m)] = float(np.mean(err <= m * patch)) if err.size else float("nan")
        out[f"chance_{recall_key(m)}"] = float(np.mean(chance[:, j])) if err.size else float("nan")
    matched = err[np.isfinite(err)]
    out["median_epe"] = float(np.median(matched)) if matched.size else float("nan")
    zero = np.concatenate([e.zero_motion for e in errors])
    out["zero_motion_median_epe"] = float(np.median(zero)) if zero.size else float("nan")
    for m in multiples:  # what features that encode only the position would reach
        out[f"zero_motion_{recall_key(m)}"] = float(np.mean(zero <= m * patch)) if zero.size else float("nan")
    out["matched_fraction"] = float(matched.size / err.size) if err.size else float("nan")
    out["n_points"] = int(err.size)
    out["n_pairs"] = int(sum(1 for e in errors if e.error.size))
    return out


def check_bins(edges: tuple[float, ...] | list[float], what: str) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges)
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"{what}: bin edges must be at least two strictly increasing numbers, got {list(edges)}")
    return edges


def bin_index(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bin of each value: [e0, e1), [e1, e2), ..., the last bin closed on the right; -1 outside."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.searchsorted(np.asarray(edges), values, side="right") - 1
    idx = np.where(values == edges[-1], len(edges) - 2, idx)
    return np.where((values < edges[0]) | (values > edges[-1]) | ~np.isfinite(values), -1, idx)


def bin_label(edges: tuple[float, ...], j: int) -> str:
    close = "]" if j == len(edges) - 2 else ")"
    return f"[{edges[j]:g}, {edges[j + 1]:g}{close}"


def correspondence_metrics(
    feat1: np.ndarray,
    feat2: np.ndarray,
    queries: PatchQueries,
    patch: int,
    covis: np.ndarray,
    rotation_deg: np.ndarray,
    matching: str = "one_way",
    multiples: tuple[int, ...] = PATCH_MULTIPLES,
    covis_bins: tuple[float, ...] = DEFAULT_COVIS_BINS,
    rotation_bins: tuple[float, ...] = DEFAULT_ROTATION_BINS_DEG,
) -> dict:
    """Pooled metrics plus ``bins``: {'covis': {label: metrics}, 'rotation_deg': {label: metrics}}.

    ``feat1``/``feat2`` are (N, G*G, C) per-patch features of view 1 / view 2 (row-major patches).
    """
    n = queries.valid.shape[0]
    if feat1.shape[:2] != queries.valid.shape or feat2.shape[:2] != queries.valid.shape:
        raise ValueError(
            f"correspondence: features {feat1.shape} / {feat2.shape} do not match {n} pairs x "
            f"{queries.valid.shape[1]} patches"
        )
    covis = np.asarray(covis, dtype=np.float64)
    rotation_deg = np.asarray(rotation_deg, dtype=np.float64)
    if covis.shape != (n,) or rotation_deg.shape != (n,):
        raise ValueError(f"correspondence: need one co-visibility and one rotation per pair ({n}), "
                         f"got {covis.shape} and {rotation_deg.shape}")
    thresholds = np.asarray([m * patch for m in multiples], dtype=np.float64)
    per_pair = [pair_errors(feat1[i], feat2[i], queries, i, thresholds, matching) for i in range(n)]
    out = summarise(per_pair, multiples, patch)
    if out["n_points"] == 0:
        raise ValueError("correspondence: no covisible patch centre in any pair")
    bins: dict[str, dict[str, dict]] = {}
    for name, values, edges in (("covis", covis, check_bins(covis_bins, "covis_bins")),
                                ("rotation_deg", rotation_deg, check_bins(rotation_bins, "rotation_bins_deg"))):
        which = bin_index(values, edges)
        bins[name] = {
            bin_label(edges, j): summarise([per_pair[i] for i in range(n) if which[i] == j], multiples, patch)
            for j in range(len(edges) - 1)
        }
    out["bins"] = bins
    out["thresholds_px"] = {recall_key(m): float(t) for m, t in zip(multiples, thresholds)}
    return out

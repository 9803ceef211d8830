"""Downstream metrics in numpy: monocular depth, optical flow, relative pose.

Conventions (stated once here, quoted in the tables):

* depth: AbsRel = mean |d - d*| / d*, RMSE in metres, delta1 = fraction with
  max(d/d*, d*/d) < 1.25, over pixels with valid ground truth (d* > 0). With ``median_scale``
  the prediction is first multiplied by median(d*) / median(d) per image (the usual protocol for
  scale-ambiguous monocular probes); the tables say which one was used.
* flow: end-point error in pixels and bad-pixel rates (EPE > 1 px, > 3 px) on covisible pixels.
* pose: geodesic rotation error and angle between translation directions, in degrees; the
  translation of a pair is compared by direction only (monocular scale is unobservable).
"""

from __future__ import annotations

import math

import numpy as np

DELTA1_THRESHOLD = 1.25


def _as_mask(mask: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{what}: mask shape {mask.shape} does not match {shape}")
    return mask.astype(bool)


def median_scale(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Factor s such that median(s * pred) == median(gt) over ``valid``."""
    p = pred[valid]
    if p.size == 0:
        raise ValueError("median_scale: no valid pixels")
    med = float(np.median(p))
    if not med > 0:
        raise ValueError(f"median_scale: median prediction is {med}, cannot scale")
    return float(np.median(gt[valid])) / med


def depth_metrics(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, *, median_scaling: bool = False
) -> dict[str, float]:
    """AbsRel, RMSE and delta1 of depth maps (any leading batch shape), pooled over valid pixels.

    With ``median_scaling`` each image (last two axes) is scaled separately.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"depth_metrics: prediction shape {pred.shape} != ground truth {gt.shape}")
    if pred.ndim < 2:
        raise ValueError(f"depth_metrics: expected (..., H, W) arrays, got shape {pred.shape}")
    if not np.all(np.isfinite(pred)):
        raise ValueError("depth_metrics: prediction contains NaN or infinite values")
    valid = _as_mask(mask, gt.shape, "depth_metrics") & (gt > 0) & np.isfinite(gt)
    if not valid.any():
        raise ValueError("depth_metrics: no pixel has valid ground-truth depth")
    if median_scaling:
        pred = pred.copy()
        flat_p = pred.reshape(-1, *pred.shape[-2:])
        flat_g = gt.reshape(-1, *gt.shape[-2:])
        flat_v = valid.reshape(-1, *valid.shape[-2:])
        for i in range(flat_p.shape[0]):
            if flat_v[i].any():
                flat_p[i] *= median_scale(flat_p[i], flat_g[i], flat_v[i])
        pred = flat_p.reshape(pred.shape)
    p = np.maximum(pred[valid], 1e-6)  # a non-positive depth prediction counts as a tiny one
    g = gt[valid]
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "delta1": float(np.mean(ratio < DELTA1_THRESHOLD)),
        "n_pixels": int(valid.sum()),
    }


def flow_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """EPE and bad-pixel rates of flow fields (..., H, W, 2) over ``mask`` (covisible pixels)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.shape[-1] != 2:
        raise ValueError(f"flow_metrics: expected matching (..., H, W, 2) arrays, got {pred.shape} and {gt.shape}")
    if not np.all(np.isfinite(pred)):
        raise ValueError("flow_metrics: prediction contains NaN or infinite values")
    valid = _as_mask(mask, gt.shape[:-1], "flow_metrics") & np.all(np.isfinite(gt), axis=-1)
    if not valid.any():
        raise ValueError("flow_metrics: no covisible pixel to evaluate")
    epe = np.linalg.norm(pred[valid] - gt[valid], axis=-1)
    return {
        "epe": float(epe.mean()),
        "bad1": float(np.mean(epe > 1.0)),
        "bad3": float(np.mean(epe > 3.0)),
        "n_pixels": int(valid.sum()),
    }


def rotation_error_deg(r_pred: np.ndarray, r_gt: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotations (..., 3, 3), degrees."""
    r_pred = np.asarray(r_pred, dtype=np.float64)
    r_gt = np.asarray(r_gt, dtype=np.float64)
    rel = np.swapaxes(r_pred, -1, -2) @ r_gt
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def direction_error_deg(t_pred: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """Angle between translation directions (..., 3), degrees; a zero vector is an error."""
    t_pred = np.asarray(t_pred, dtype=np.float64)
    t_gt = np.asarray(t_gt, dtype=np.float64)
    n_pred = np.linalg.norm(t_pred, axis=-1)
    n_gt = np.linalg.norm(t_gt, axis=-1)
    if np.any(n_gt < 1e-12):
        raise ValueError("direction_error_deg: a ground-truth translation is zero (no baseline)")
    if np.any(n_pred < 1e-12):
        raise ValueError("direction_error_deg: a predicted translation is zero")
    cos = np.sum(t_pred * t_gt, axis=-1) / (n_pred * n_gt)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def pose_metrics(
    r_pred: np.ndarray, t_pred: np.ndarray, r_gt: np.ndarray, t_gt: np.ndarray
) -> dict[str, float]:
    """Median rotation / translation-direction errors and accuracy at 5 and 10 degrees.

    ``acc5``/``acc10`` count a pair as correct when *both* errors are below the threshold.
    """
    r_pred = np.asarray(r_pred, dtype=np.float64).reshape(-1, 3, 3)
    r_gt = np.asarray(r_gt, dtype=np.float64).reshape(-1, 3, 3)
    t_pred = np.asarray(t_pred, dtype=np.float64).reshape(-1, 3)
    t_gt = np.asarray(t_gt, dtype=np.float64).reshape(-1, 3)
    if not (len(r_pred) == len(r_gt) == len(t_pred) == len(t_gt)) or len(r_gt) == 0:
        raise ValueError(
            f"pose_metrics: need the same non-zero number of poses, got {len(r_pred)}, {len(r_gt)}, "
            f"{len(t_pred)}, {len(t_gt)}"
        )
    if not (np.all(np.isfinite(r_pred)) and np.all(np.isfinite(t_pred))):
        raise ValueError("pose_metrics: prediction contains NaN or infinite values")
    rot = rotation_error_deg(r_pred, r_gt)
    trans = direction_error_deg(t_pred, t_gt)
    worst = np.maximum(rot, trans)
    return {
        "rot_err_deg": float(np.median(rot)),
        "trans_err_deg": float(np.median(trans)),
        "acc5": float(np.mean(worst < 5.0)),
        "acc10": float(np.mean(worst < 10.0)),
        "n_pairs": int(len(rot)),
    }


def rotation_from_axis_angle(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rodrigues' formula; used to build test rotations with a known angle."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    a = math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)


# Which direction is better, for tables and plots.
HIGHER_IS_BETTER = {
    "abs_rel": False,
    "rmse": False,
    "delta1": True,
    "abs_rel_median_scaled": False,
    "rmse_median_scaled": False,
    "delta1_median_scaled": True,
    "epe": False,
    "epe_original_px": False,
    "bad1": False,
    "bad3": False,
    "rot_err_deg": False,
    "trans_err_deg": False,
    "acc5": True,
    "acc10": True,
    # zero-shot correspondence (evaluation/correspondence.py), encoder and decoder features
    **{f"{f}_recall_{m}p": True for f in ("enc", "dec") for m in (1, 2, 4, 8)},
    **{f"{f}_median_epe": False for f in ("enc", "dec")},
    # cross-view gain (training/cross_view.py): loss with a mismatched minus the true reference
    "gain": True,
    "relative_gain": True,
    "loss_true": False,
}

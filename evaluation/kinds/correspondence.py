"""Zero-shot correspondence (evaluation.correspondence): no head; the arrays are both directions of
every pair with a covisible pixel, with the ground-truth flow, the covisible mask, the pair's
co-visibility at this crop and its rotation angle."""

from __future__ import annotations

import numpy as np

from evaluation.ground_truth import PairSample, pair_flow, rotation_angle_deg, swapped

TWO_VIEW = True
ZERO_SHOT = True


def arrays(fitted: list[PairSample]) -> dict[str, np.ndarray]:
    """Both directions of every pair with a covisible pixel: images, flow, covisible mask, the
    pair's co-visibility at this crop (min of the two directions, over H*W) and rotation angle."""
    rows = []
    for p in fitted:
        directions = [(q, *pair_flow(q)) for q in (p, swapped(p))]
        covis = min(float(mask.mean()) for _, _, mask in directions)
        angle = rotation_angle_deg(p.cam2world1, p.cam2world2)
        for q, flow, mask in directions:
            if mask.any():
                rows.append((q.img1, q.img2, np.nan_to_num(flow), mask, covis, angle))
    if not rows:
        raise ValueError("no val pair has a covisible pixel at this resolution")
    keys = ("img1", "img2", "flow", "valid", "covis", "rotation_deg")
    return {k: np.stack([r[i] for r in rows]) if i < 4 else np.asarray([r[i] for r in rows], np.float64)
            for i, k in enumerate(keys)}

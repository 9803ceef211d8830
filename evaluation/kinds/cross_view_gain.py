"""The cross-view gain of the pretext loss (training.cross_view): no head; the arrays are the pairs'
two views as they are."""

from __future__ import annotations

import numpy as np

from evaluation.ground_truth import PairSample

TWO_VIEW = True
ZERO_SHOT = True


def arrays(fitted: list[PairSample]) -> dict[str, np.ndarray]:
    return {"img1": np.stack([p.img1 for p in fitted]), "img2": np.stack([p.img2 for p in fitted])}

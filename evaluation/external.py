"""What the external datasets' array builders share (evaluation.readers: one module per dataset).

Same input contract as the corpus tasks (evaluation.val_split): square uint8 images of the model's
input size. Each image is resized so that its short side equals that size and centre-cropped;
depth is resized by nearest neighbour, flow by nearest neighbour with its vectors scaled by the
resize factors, so every target is measured in the pixels the model sees. The result records
the factor back to the original resolution (``to_original_px``) so that flow errors can be read
in the dataset's own pixels, as published.
"""

from __future__ import annotations

import cv2
import numpy as np


def evenly_spaced(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread over range(n) (all of them when limit is None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def resize_center_crop(image: np.ndarray, size: int, nearest: bool) -> tuple[np.ndarray, float, float]:
    """(size x size crop, x scale, y scale): short side resized to ``size``, then centre-cropped."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[top: top + size, left: left + size], new_w / width, new_h / height

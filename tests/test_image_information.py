"""rendering.pair.image_information: hand-made cases, and equality with the plain block reduction."""

import numpy as np
import pytest

from rendering.pair import INFORMATION_BLOCK, INFORMATION_RANGE, image_information


def block_reduction_reference(rgb: np.ndarray) -> float:
    """The definition, written as one max/min over the block axes."""
    b = INFORMATION_BLOCK
    h, w = (rgb.shape[0] // b) * b, (rgb.shape[1] // b) * b
    if h == 0 or w == 0:
        return float(rgb.size > 0 and int(np.ptp(rgb)) >= INFORMATION_RANGE)
    blocks = rgb[:h, :w].reshape(h // b, b, w // b, b, -1)
    spread = blocks.max(axis=(1, 3)).astype(np.int16) - blocks.min(axis=(1, 3))
    return float(np.mean(spread.max(axis=-1) >= INFORMATION_RANGE))


def test_flat_image_has_none_and_an_edge_marks_the_blocks_it_crosses():
    image = np.full((64, 64, 3), 120, np.uint8)
    assert image_information(image) == 0.0
    image[:, 20:] = 120 + INFORMATION_RANGE  # a vertical edge inside the third column of blocks
    assert image_information(image) == pytest.approx(1 / 8)
    image[:, 20:] = 120 + INFORMATION_RANGE - 1  # one level short of the range: not counted
    assert image_information(image) == 0.0
    image[:, :, 2] = 0
    image[5, 5, 2] = 200  # one pixel of one channel marks its block only
    assert image_information(image) == pytest.approx(1 / 64)


@pytest.mark.parametrize("shape", [(256, 256, 3), (250, 261, 3), (64, 48, 3), (31, 17, 3), (7, 7, 3), (40, 24)])
def test_equals_the_block_reduction_on_varied_images(shape):
    rng = np.random.default_rng(sum(shape))
    for spread in (256, 6, 3):
        image = (rng.integers(0, spread, shape) + (256 - spread) // 2).astype(np.uint8)
        assert image_information(image) == block_reduction_reference(image)
    stripes = np.zeros(shape, np.uint8)
    stripes[::11] = 9
    assert image_information(stripes) == block_reduction_reference(stripes)

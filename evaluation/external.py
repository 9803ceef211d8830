"""Head-train / test arrays of the external datasets (NYUv2 depth, MPI-Sintel flow).

Same input contract as the corpus tasks (evaluation.val_split): square uint8 images of the model's
input size. Each image is resized so that its short side equals that size and centre-cropped;
depth is resized by nearest neighbour, flow by nearest neighbour with its vectors scaled by the
resize factors, so every target is measured in the pixels the model sees. The result records
the factor back to the original resolution (``to_original_px``) so that flow errors can be read
in the dataset's own pixels, as published.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evaluation.external_sections import NYUv2Source, SintelSource
from evaluation.readers.nyuv2 import EIGEN_CROP
from evaluation.val_split import TaskArrays

NYU_IMAGE_SHAPE = (480, 640)


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


def eigen_crop(image: np.ndarray) -> np.ndarray:
    """Eigen et al.'s evaluation crop, scaled from 480 x 640 to the image's size."""
    rows, cols = EIGEN_CROP
    fy, fx = image.shape[0] / NYU_IMAGE_SHAPE[0], image.shape[1] / NYU_IMAGE_SHAPE[1]
    return image[round(rows.start * fy): round(rows.stop * fy), round(cols.start * fx): round(cols.stop * fx)]


def nyuv2_arrays(source: NYUv2Source, size: int) -> tuple[TaskArrays, TaskArrays, str]:
    """(train, test, how): the official train / test splits inside the Eigen crop.

    Depth beyond ``max_depth_m`` (and missing depth) is 0, i.e. neither trained on nor scored.
    """
    from evaluation.readers import NYUv2

    def load(split: str, limit: int | None) -> TaskArrays:
        with NYUv2.with_split(source.labeled_mat, source.splits_mat, split) as ds:
            if len(ds) == 0:
                raise ValueError(f"NYUv2 {split} split in {source.splits_mat} is empty")
            images, depths = [], []
            for i in evenly_spaced(len(ds), limit):
                image, depth = ds[int(i)]
                image, _, _ = resize_center_crop(eigen_crop(image), size, nearest=False)
                depth, _, _ = resize_center_crop(eigen_crop(depth), size, nearest=True)
                depth = np.where(np.isfinite(depth) & (depth > 0) & (depth <= source.max_depth_m), depth, 0)
                images.append(image)
                depths.append(depth.astype(np.float32))
        if not any(d.any() for d in depths):
            raise ValueError(f"NYUv2 {split} split of {source.labeled_mat}: no pixel with depth in (0, {source.max_depth_m}] m")
        return TaskArrays("depth", {"img1": np.stack(images), "depth": np.stack(depths)})

    return load("train", source.max_train), load("test", source.max_test), "nyuv2 official split"


def sintel_test_scenes(scenes: list[str], source: SintelSource, test_fraction: float) -> list[str]:
    if source.test_scenes is not None:
        return list(source.test_scenes)
    if len(scenes) < 2:
        raise ValueError(f"Sintel at {source.root} holds one scene ({scenes}): heads need other scenes to train on")
    n_test = min(len(scenes) - 1, max(1, round(test_fraction * len(scenes))))
    return scenes[-n_test:]


def sintel_arrays(
    source: SintelSource, pass_name: str, size: int, test_fraction: float
) -> tuple[TaskArrays, TaskArrays, str]:
    """(train, test, how): frame pairs of one pass, split by scene. ``valid`` excludes only the
    pixels Sintel marks invalid, so EPE is Sintel's published "all pixels" figure (occluded included)."""
    from evaluation.readers import SintelFlow

    everything = SintelFlow(source.root, pass_name)
    test_scenes = sintel_test_scenes(everything.scenes, source, test_fraction)
    unknown = sorted(set(test_scenes) - set(everything.scenes))
    if unknown:
        raise ValueError(f"[evaluate.sintel] test_scenes {unknown} not found under {source.root / 'training' / 'flow'}")
    train_scenes = [s for s in everything.scenes if s not in test_scenes]
    if not train_scenes:
        raise ValueError(f"[evaluate.sintel] test_scenes hold every scene of {source.root}: none left to train on")

    def load(scenes: list[str], limit: int | None) -> TaskArrays:
        ds = SintelFlow(source.root, pass_name, scenes)
        rows = {"img1": [], "img2": [], "flow": [], "valid": []}
        to_original: set[float] = set()
        for i in evenly_spaced(len(ds), limit):
            s = ds[int(i)]
            img1, _, _ = resize_center_crop(s.img1, size, nearest=False)
            img2, _, _ = resize_center_crop(s.img2, size, nearest=False)
            flow, sx, sy = resize_center_crop(s.flow, size, nearest=True)
            valid, _, _ = resize_center_crop(s.valid.astype(np.uint8), size, nearest=True)
            rows["img1"].append(img1)
            rows["img2"].append(img2)
            rows["flow"].append(flow * np.array([sx, sy], dtype=np.float32))
            rows["valid"].append(valid.astype(bool) & np.isfinite(flow).all(axis=2))
            to_original.add(round(1.0 / np.sqrt(sx * sy), 6))
        if len(to_original) != 1:
            raise ValueError(f"Sintel frames under {source.root} differ in size; expected one resolution")
        arrays = {k: np.stack(v) for k, v in rows.items()}
        arrays["flow"] = np.nan_to_num(arrays["flow"])
        return TaskArrays("flow", arrays, to_original_px=to_original.pop())

    return (load(train_scenes, source.max_train), load(test_scenes, source.max_test),
            f"sintel scenes (test: {', '.join(test_scenes)})")

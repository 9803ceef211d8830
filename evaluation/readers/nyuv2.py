"""NYU Depth v2, labeled subset: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5).

MATLAB stores arrays column-major, so through h5py the datasets appear transposed:
``images`` is (N, 3, W, H) uint8 and ``depths`` is (N, W, H) float (metres); one image is
``images[i].transpose(2, 1, 0)`` -> (H, W, 3) and its depth ``depths[i].T`` -> (H, W), with
H=480, W=640 in the official file (1449 images). The official split ``splits.mat`` (MATLAB v5)
holds 1-based ``trainNdxs`` (795) and ``testNdxs`` (654).

Also everything the evaluation needs to use it as an external dataset (evaluation.tasks): its
``[evaluate.nyuv2]`` section, the check before any work, the head-train / test arrays and the
table's note. Readers and array builders import h5py, scipy and OpenCV when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from evaluation.val_split import TaskArrays

# Colour-camera intrinsics of the labeled set (640x480), from the NYUv2 toolbox.
NYU_DEPTH_INTRINSICS = np.array(
    [[518.8579, 0.0, 325.5824], [0.0, 519.4696, 253.7362], [0.0, 0.0, 1.0]], dtype=np.float64
)
# Eigen et al.'s evaluation crop (rows, cols) of the 480x640 images, used by most depth papers.
EIGEN_CROP = (slice(45, 471), slice(41, 601))
NYU_IMAGE_SHAPE = (480, 640)


class NYUv2Source(BaseModel):
    """NYU Depth v2 (labeled subset) as published: heads train on the official train split and
    are scored on the official test split (654 images), inside Eigen's evaluation crop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labeled_mat: Path = Field(description="nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5)")
    splits_mat: Path = Field(description="splits.mat with trainNdxs / testNdxs")
    max_train: int | None = Field(None, gt=0, description="evenly spaced subset of the train split (None = all 795)")
    max_test: int | None = Field(None, gt=0, description="evenly spaced subset of the test split (None = all 654)")
    max_depth_m: float = Field(10.0, gt=0, description="ground truth beyond this is not scored (NYUv2 convention)")


def read_nyuv2_split(path: Path) -> dict[str, np.ndarray]:
    """0-based ``train`` and ``test`` indices from the official ``splits.mat``."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NYUv2 split file not found: {path}")
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise ValueError(f"NYUv2 split file {path} is not a readable MATLAB file: {exc}") from exc
    out = {}
    for name, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        if key not in mat:
            raise ValueError(f"NYUv2 split file {path} lacks {key!r}")
        out[name] = np.asarray(mat[key]).reshape(-1).astype(np.int64) - 1
    return out


class NYUv2:
    """Random access to (image (H, W, 3) uint8, depth (H, W) float32 metres) of the labeled set."""

    def __init__(self, path: Path, indices: np.ndarray | None = None) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"NYUv2 file not found: {self.path}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(
                f"{self.path} is not an HDF5 (MATLAB v7.3) file; expected nyu_depth_v2_labeled.mat: {exc}"
            ) from exc
        for key in ("images", "depths"):
            if key not in self._file:
                raise ValueError(f"{self.path} lacks the {key!r} dataset (keys: {sorted(self._file.keys())})")
        self._images = self._file["images"]
        self._depths = self._file["depths"]
        if self._images.ndim != 4 or self._images.shape[1] != 3:
            raise ValueError(f"{self.path}: 'images' should be (N, 3, W, H), got {self._images.shape}")
        n, _, w, h = self._images.shape
        if self._depths.shape != (n, w, h):
            raise ValueError(f"{self.path}: 'depths' {self._depths.shape} does not match images {self._images.shape}")
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise ValueError(f"{self.path}: split indices outside [0, {n})")

    @classmethod
    def with_split(cls, path: Path, split_path: Path, split: str) -> "NYUv2":
        splits = read_nyuv2_split(split_path)
        if split not in splits:
            raise ValueError(f"unknown NYUv2 split {split!r}; allowed: train, test")
        return cls(path, splits[split])

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        j = int(self.indices[i])
        image = np.ascontiguousarray(np.asarray(self._images[j]).transpose(2, 1, 0))
        depth = np.ascontiguousarray(np.asarray(self._depths[j], dtype=np.float32).T)
        return image, depth

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "NYUv2":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------- as an external dataset


def eigen_crop(image: np.ndarray) -> np.ndarray:
    """Eigen et al.'s evaluation crop, scaled from 480 x 640 to the image's size."""
    rows, cols = EIGEN_CROP
    fy, fx = image.shape[0] / NYU_IMAGE_SHAPE[0], image.shape[1] / NYU_IMAGE_SHAPE[1]
    return image[round(rows.start * fy): round(rows.stop * fy), round(cols.start * fx): round(cols.stop * fx)]


def nyuv2_arrays(source: NYUv2Source, size: int) -> tuple["TaskArrays", "TaskArrays", str]:
    """(train, test, how): the official train / test splits inside the Eigen crop.

    Depth beyond ``max_depth_m`` (and missing depth) is 0, i.e. neither trained on nor scored.
    """
    from evaluation.external import evenly_spaced, resize_center_crop
    from evaluation.val_split import TaskArrays

    def load(split: str, limit: int | None) -> "TaskArrays":
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


def check(section: NYUv2Source, task: Any) -> None:
    """Open both files once, so that a wrong path fails before any work."""
    NYUv2(section.labeled_mat).close()
    read_nyuv2_split(section.splits_mat)


def task_arrays(task: Any, section: NYUv2Source, size: int, test_fraction: float) -> tuple:
    """(train, test, how): the official split (``test_fraction`` does not apply)."""
    return nyuv2_arrays(section, size)


def table_note(task: Any, how: str | None, zero_epe: float | None) -> str:
    return (f"- {task.name}: NYU Depth v2 labeled set, heads trained on the official train split and scored on the "
            "official test split inside Eigen's crop, depth up to [evaluate.nyuv2] max_depth_m; images at the "
            "model's input size.")

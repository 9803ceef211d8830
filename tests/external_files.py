"""Write tiny NYUv2 and MPI-Sintel datasets (the external datasets) in their official file formats (no downloads)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import h5py
import numpy as np
from scipy.io import savemat


def write_nyuv2(path: Path, images: list[np.ndarray], depths: list[np.ndarray]) -> None:
    """MATLAB v7.3 layout: HDF5 with a 512-byte user block and column-major (transposed) arrays."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = np.stack([im.transpose(2, 1, 0) for im in images])  # (N, 3, W, H)
        f["depths"] = np.stack([d.T for d in depths])  # (N, W, H)
        f["labels"] = np.zeros((len(images),) + depths[0].T.shape, np.uint16)


def write_nyuv2_splits(path: Path, train: list[int], test: list[int]) -> None:
    """splits.mat (MATLAB v5) with 1-based column vectors, as published."""
    savemat(path, {"trainNdxs": np.array(train).reshape(-1, 1), "testNdxs": np.array(test).reshape(-1, 1)})


def flo_bytes(flow: np.ndarray) -> bytes:
    h, w, _ = flow.shape
    return b"PIEH" + struct.pack("<ii", w, h) + flow.astype("<f4").tobytes()


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)  # cv2 writes BGR


def write_sintel_scene(root: Path, scene: str, frames: list[np.ndarray], flows: list[np.ndarray],
                       passes: tuple[str, ...] = ("clean", "final"),
                       masks: dict[str, dict[int, np.ndarray]] | None = None) -> None:
    """training/<pass>/<scene>/frame_%04d.png (from 1), training/flow/<scene>/frame_%04d.flo, and
    optional ``masks`` {'occlusions' | 'invalid': {frame: (H, W) uint8 255 = set}}."""
    training = Path(root) / "training"
    for pass_name in passes:
        for i, frame in enumerate(frames, start=1):
            write_png(training / pass_name / scene / f"frame_{i:04d}.png", frame)
    (training / "flow" / scene).mkdir(parents=True, exist_ok=True)
    for i, flow in enumerate(flows, start=1):
        (training / "flow" / scene / f"frame_{i:04d}.flo").write_bytes(flo_bytes(flow))
    for kind, per_frame in (masks or {}).items():
        for i, mask in per_frame.items():
            write_png(training / kind / scene / f"frame_{i:04d}.png", mask)

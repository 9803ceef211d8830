"""MPI-Sintel optical flow, training set layout.

``training/{clean,final}/<scene>/frame_%04d.png`` (frames start at 1) and
``training/flow/<scene>/frame_%04d.flo``: flow *i* maps frame *i* to frame *i+1*.
Optional ``training/occlusions/<scene>/frame_%04d.png`` (255 = occluded) and
``training/invalid/<scene>/frame_%04d.png``.

The ``.flo`` format (Middlebury): 4 bytes tag, the float32 202021.25 (reads 'PIEH' as ASCII), then
int32 width, int32 height, then height*width*2 float32 in row-major order, (u, v) interleaved;
all little-endian.

Also everything the evaluation needs to use it as an external dataset (evaluation.tasks): its
``[evaluate.sintel]`` section, the check before any work, the head-train / test arrays (one pass,
split by scene) and the table's note. OpenCV is imported when frames are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rendering.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from evaluation.val_split import TaskArrays

FLO_TAG = 202021.25
PASSES = ("clean", "final")
_MAX_SIDE = 1 << 15


def read_flo(path: Path) -> np.ndarray:
    """Read a ``.flo`` file as (H, W, 2) float32 (u, v)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise ValueError(f"{path}: too short for a .flo header ({len(data)} bytes)")
    tag = np.frombuffer(data, dtype="<f4", count=1)[0]
    if tag != np.float32(FLO_TAG):
        raise ValueError(f"{path}: not a .flo file (tag {data[:4]!r}, expected b'PIEH')")
    width, height = (int(v) for v in np.frombuffer(data, dtype="<i4", count=2, offset=4))
    if not (0 < width < _MAX_SIDE and 0 < height < _MAX_SIDE):
        raise ValueError(f"{path}: implausible size {width}x{height}")
    expected = 12 + width * height * 8
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, expected {expected} for {width}x{height} (truncated?)")
    flow = np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2)
    return flow.astype(np.float32)


def write_flo(path: Path, flow: np.ndarray) -> None:
    """Write (H, W, 2) flow as a ``.flo`` file (to a temporary name, then renamed)."""
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"write_flo: expected (H, W, 2), got {flow.shape}")
    path = Path(path)
    header = np.array([FLO_TAG], dtype="<f4").tobytes() + np.array(flow.shape[1::-1], dtype="<i4").tobytes()
    atomic_write_bytes(path, header + np.ascontiguousarray(flow).tobytes())


@dataclass(frozen=True)
class SintelSample:
    scene: str
    frame: int
    img1: np.ndarray  # (H, W, 3) uint8 RGB
    img2: np.ndarray
    flow: np.ndarray  # (H, W, 2) float32
    valid: np.ndarray  # (H, W) bool: not marked invalid (all True without the mask)
    occluded: np.ndarray  # (H, W) bool: occluded in frame i+1 (all False without the mask)


class SintelFlow:
    """Pairs (frame i, frame i+1, flow i) of one rendering pass of the Sintel training set."""

    def __init__(self, root: Path, pass_name: str = "clean", scenes: list[str] | None = None) -> None:
        if pass_name not in PASSES:
            raise ValueError(f"unknown Sintel pass {pass_name!r}; allowed: {', '.join(PASSES)}")
        self.root = Path(root)
        self.pass_name = pass_name
        training = self.root / "training"
        image_dir = training / pass_name
        flow_dir = training / "flow"
        for folder in (image_dir, flow_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"Sintel folder not found: {folder} (expected <root>/training/...)")
        available = sorted(p.name for p in flow_dir.iterdir() if p.is_dir())
        if scenes is not None:
            missing = sorted(set(scenes) - set(available))
            if missing:
                raise ValueError(f"Sintel scenes {missing} not in {flow_dir}")
            available = [s for s in available if s in scenes]
        self.items: list[tuple[str, int]] = []
        for scene in available:
            for flo in sorted((flow_dir / scene).glob("frame_*.flo")):
                frame = int(flo.stem.split("_")[1])
                for f in (frame, frame + 1):
                    png = image_dir / scene / f"frame_{f:04d}.png"
                    if not png.is_file():
                        raise FileNotFoundError(f"Sintel frame missing for {flo}: {png}")
                self.items.append((scene, frame))
        if not self.items:
            raise ValueError(f"no .flo files under {flow_dir}")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def scenes(self) -> list[str]:
        return sorted({scene for scene, _ in self.items})

    def _png(self, path: Path) -> np.ndarray:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot decode image {path}")
        return img

    def __getitem__(self, i: int) -> SintelSample:
        import cv2

        scene, frame = self.items[i]
        training = self.root / "training"
        imgs = []
        for f in (frame, frame + 1):
            img = self._png(training / self.pass_name / scene / f"frame_{f:04d}.png")
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            imgs.append(cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB))
        flow = read_flo(training / "flow" / scene / f"frame_{frame:04d}.flo")
        if flow.shape[:2] != imgs[0].shape[:2]:
            raise ValueError(f"Sintel {scene} frame {frame}: flow {flow.shape[:2]} != image {imgs[0].shape[:2]}")
        invalid = self._mask(training / "invalid" / scene / f"frame_{frame:04d}.png", flow.shape[:2])
        occluded = self._mask(training / "occlusions" / scene / f"frame_{frame:04d}.png", flow.shape[:2])
        return SintelSample(scene=scene, frame=frame, img1=imgs[0], img2=imgs[1], flow=flow,
                            valid=~invalid, occluded=occluded)

    def _mask(self, path: Path, shape: tuple[int, ...]) -> np.ndarray:
        """A binary mask PNG (255 = set) as bool; all False when the file is absent."""
        if not path.is_file():
            return np.zeros(shape, dtype=bool)
        mask = self._png(path)
        mask = mask if mask.ndim == 2 else mask[..., 0]
        if mask.shape != shape:
            raise ValueError(f"Sintel mask {path}: size {mask.shape} != flow {shape}")
        return mask >= 128


# --------------------------------------------------------------- as an external dataset


class SintelSource(BaseModel):
    """MPI-Sintel training set: heads train on some scenes and are scored on the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(description="folder holding training/{clean,final,flow}/<scene>/")
    test_scenes: list[str] | None = Field(
        None, description="scenes held out for scoring; None = the last test_fraction of the sorted scenes"
    )
    max_train: int | None = Field(None, gt=0, description="evenly spaced subset of the training pairs")
    max_test: int | None = Field(None, gt=0, description="evenly spaced subset of the test pairs")

    @field_validator("test_scenes")
    @classmethod
    def _some_scenes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("test_scenes: list at least one scene, or leave it out")
        return value


def sintel_test_scenes(scenes: list[str], source: SintelSource, test_fraction: float) -> list[str]:
    if source.test_scenes is not None:
        return list(source.test_scenes)
    if len(scenes) < 2:
        raise ValueError(f"Sintel at {source.root} holds one scene ({scenes}): heads need other scenes to train on")
    n_test = min(len(scenes) - 1, max(1, round(test_fraction * len(scenes))))
    return scenes[-n_test:]


def sintel_arrays(
    source: SintelSource, pass_name: str, size: int, test_fraction: float
) -> tuple["TaskArrays", "TaskArrays", str]:
    """(train, test, how): frame pairs of one pass, split by scene. ``valid`` excludes only the
    pixels Sintel marks invalid, so EPE is Sintel's published "all pixels" figure (occluded included)."""
    from evaluation.external import evenly_spaced, resize_center_crop
    from evaluation.val_split import TaskArrays

    everything = SintelFlow(source.root, pass_name)
    test_scenes = sintel_test_scenes(everything.scenes, source, test_fraction)
    unknown = sorted(set(test_scenes) - set(everything.scenes))
    if unknown:
        raise ValueError(f"[evaluate.sintel] test_scenes {unknown} not found under {source.root / 'training' / 'flow'}")
    train_scenes = [s for s in everything.scenes if s not in test_scenes]
    if not train_scenes:
        raise ValueError(f"[evaluate.sintel] test_scenes hold every scene of {source.root}: none left to train on")

    def load(scenes: list[str], limit: int | None) -> "TaskArrays":
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


def check(section: SintelSource, task: Any) -> None:
    """Index the task's pass once, so that a wrong root fails before any work."""
    SintelFlow(section.root, task.variant)


def task_arrays(task: Any, section: SintelSource, size: int, test_fraction: float) -> tuple:
    """(train, test, how) of the task's pass (``task.variant``), split by scene."""
    return sintel_arrays(section, task.variant, size, test_fraction)


def table_note(task: Any, how: str | None, zero_epe: float | None) -> str:
    return (f"- {task.name}: MPI-Sintel training set, {task.variant} pass, {how or 'split by scene'}; "
            "EPE over every pixel not marked invalid (occluded ones included), at the model's input size and, "
            "in 'orig. px', scaled to Sintel's own pixels (the unit of the published EPE)"
            + (f"; predicting zero flow gives EPE {zero_epe:.3f} px" if zero_epe is not None else "") + ".")

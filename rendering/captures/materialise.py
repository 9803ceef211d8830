"""Turn a mined pair of frames into the shard schema's pair record (images, depth, K, poses).

The colour image is first resampled onto the depth camera's grid (record.rgb_in_depth_camera),
so image, depth and ``K_depth`` describe one pinhole view. Then each view is cut to a window --
the whole frame, or with ``crops`` the rectangle covering its co-visible region (CroCo v2) -- and
resized to the output size; K is moved and scaled the same way. Depth is resized by
nearest-centre sampling (never interpolated across edges).
"""

from __future__ import annotations

import cv2
import numpy as np

from rendering.captures.record import CaptureFrame, CaptureSequence, load_depth, load_rgb, rgb_in_depth_camera
from rendering.mining import MinedPair, crop_intrinsics, crop_window
from rendering.pair import PairRecord, scene_slug

RENDERER = "capture"


def sequence_scene_id(sequence: CaptureSequence) -> str:
    """``<dataset>-<sequence>`` made key-safe: the scene id of a sequence's pairs."""
    return scene_slug(f"{sequence.dataset}-{sequence.sequence_id}")


def _resize_depth(depth: np.ndarray, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = window
    cols = x0 + np.floor((np.arange(out_size[0]) + 0.5) * (x1 - x0) / out_size[0]).astype(np.intp)
    rows = y0 + np.floor((np.arange(out_size[1]) + 0.5) * (y1 - y0) / out_size[1]).astype(np.intp)
    return np.ascontiguousarray(depth[rows[:, None], cols[None, :]])


def _resize_rgb(rgb: np.ndarray, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = window
    crop = rgb[y0:y1, x0:x1]
    if crop.shape[1] == out_size[0] and crop.shape[0] == out_size[1]:
        return np.ascontiguousarray(crop)
    shrink = out_size[0] < crop.shape[1]
    return cv2.resize(crop, out_size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def view(frame: CaptureFrame, box, out_size: tuple[int, int] | None, crops: bool,
         window: tuple[int, int, int, int] | None = None):
    """(rgb, depth, K, window) of one frame, ready for the shard; ``window`` given: that crop."""
    depth = load_depth(frame)
    rgb = rgb_in_depth_camera(frame, load_rgb(frame))
    size = frame.depth_size
    out = tuple(out_size) if out_size is not None else tuple(size)
    if window is None:
        window = crop_window(box if crops else None, size, out)
    else:
        x0, y0, x1, y1 = window
        if not (0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]):
            raise ValueError(f"frame {frame.frame_id}: crop window {list(window)} lies outside its "
                             f"{size[0]}x{size[1]} depth grid")
    return _resize_rgb(rgb, window, out), _resize_depth(depth, window, out), crop_intrinsics(frame.K_depth, window, out), window


def materialise_pair(sequence: CaptureSequence, pair: MinedPair, pair_index: int, seed: int,
                     out_size: tuple[int, int] | None = None, crops: bool = False,
                     windows: tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None = None,
                     ) -> tuple[PairRecord, dict]:
    """The pair record and the extra meta.json fields (``source``, crop windows) of a mined pair.
    ``windows`` (one per view) replay the crops of a published pair list."""
    f1, f2 = sequence.frames[pair.first], sequence.frames[pair.second]
    rgb1, depth1, K1, window1 = view(f1, pair.box1, out_size, crops, windows[0] if windows else None)
    rgb2, depth2, K2, window2 = view(f2, pair.box2, out_size, crops, windows[1] if windows else None)
    record = PairRecord(
        scene_id=sequence_scene_id(sequence), scene_uri=f"{sequence.dataset}:{sequence.sequence_id}",
        pair_index=pair_index, seed=seed, renderer=RENDERER, img1=rgb1, img2=rgb2, depth1=depth1, depth2=depth2,
        K1=K1, K2=K2, cam2world1=f1.cam2world, cam2world2=f2.cam2world, covis=pair.covis, attempts=1,
    )
    extra = {
        "source": {"dataset": sequence.dataset, "sequence": sequence.sequence_id,
                   "frame_ids": [f1.frame_id, f2.frame_id], "timestamps": [f1.timestamp, f2.timestamp]},
        "crop1": list(window1),
        "crop2": list(window2),
        "source_size": list(f1.depth_size),
        "frustum_estimate": pair.estimate,
    }
    return record, extra

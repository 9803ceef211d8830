"""Flow / pose ground truth checked photometrically on analytically ray-cast views."""

import numpy as np
import pytest

from evaluation.ground_truth import crop_pair, optical_flow, relative_pose, warp_by_flow, PairSample
from rendering.camera import intrinsics_from_fov, look_at, pixel_rays
from rendering.covisibility import reprojection_covisibility

SIZE = 64
ROOM = 3.0  # half-size of the cubic room [-3, 3]^3 (floor at y=-3)
SPHERE_C = np.array([0.0, -1.0, 0.0])
SPHERE_R = 1.0


def _texture(points: np.ndarray) -> np.ndarray:
    """Smooth colour pattern of world position (period ~0.6 m), so bilinear warping is accurate."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    r = 128 + 90 * np.sin(3.0 * x + 1.0) * np.cos(2.5 * z)
    g = 128 + 90 * np.sin(2.7 * y + 0.5 * x)
    b = 128 + 90 * np.cos(3.3 * z - 2.0 * y)
    return np.stack([r, g, b], axis=-1)


def _render(K: np.ndarray, cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast a box room with a sphere in it: (image float, z-depth)."""
    rays_cam = pixel_rays(SIZE, SIZE, K)
    dirs = rays_cam @ cam2world[:3, :3].T  # world direction with camera z == 1
    origin = cam2world[:3, 3]
    t_best = np.full(dirs.shape[:2], np.inf)
    for axis in range(3):
        for wall in (-ROOM, ROOM):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (wall - origin[axis]) / dirs[..., axis]
            t_best = np.where((t > 1e-6) & (t < t_best), t, t_best)
    oc = origin - SPHERE_C
    a = np.sum(dirs * dirs, axis=-1)
    b = 2 * dirs @ oc
    c = oc @ oc - SPHERE_R**2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t_s = (-b - np.sqrt(disc)) / (2 * a)
    hit = (disc > 0) & (t_s > 1e-6) & (t_s < t_best)
    t_best = np.where(hit, t_s, t_best)
    points = origin + dirs * t_best[..., None]
    return _texture(points), t_best.astype(np.float32)  # t along z==1 rays is z-depth


def _pair(eye2=(1.0, 0.3, 2.2)) -> PairSample:
    K = intrinsics_from_fov(SIZE, SIZE, 60.0)
    pose1 = look_at(np.array([-0.8, 0.0, 2.4]), np.array([0.0, -1.0, 0.0]))
    pose2 = look_at(np.array(eye2), np.array([0.2, -1.2, -0.2]))
    img1, d1 = _render(K, pose1)
    img2, d2 = _render(K, pose2)
    return PairSample(
        key="room-00000000", scene_id="room",
        img1=np.clip(img1, 0, 255).astype(np.uint8), img2=np.clip(img2, 0, 255).astype(np.uint8),
        depth1=d1, depth2=d2, K1=K, K2=K.copy(), cam2world1=pose1, cam2world2=pose2,
    )


def _photometric_error(pair: PairSample, flow: np.ndarray, mask: np.ndarray) -> float:
    warped = warp_by_flow(pair.img2.astype(np.float32), flow)
    return float(np.abs(warped - pair.img1.astype(np.float32))[mask].mean())


def test_warping_by_ground_truth_flow_reproduces_view1():
    pair = _pair()
    flow, covis = optical_flow(pair.depth1, pair.K1, pair.cam2world1, pair.depth2, pair.K2, pair.cam2world2)
    assert flow.shape == (SIZE, SIZE, 2) and covis.dtype == bool
    # The sphere occludes part of the room from view 2: not everything is covisible.
    assert 0.3 < covis.mean() < 0.98
    # Keep away from the image border where bilinear sampling reads outside view 2.
    good = covis.copy()
    good[:, :1] = good[:, -1:] = good[:1] = good[-1:] = False
    err = _photometric_error(pair, flow, good)
    assert err < 4.0, err  # grey levels out of 255
    perturbed = flow + np.array([2.5, -2.0], dtype=np.float32)
    assert _photometric_error(pair, perturbed, good) > 3 * err + 8.0
    # Non-covisible pixels (occluded by the sphere) do not match: the mask is doing its job.
    occluded = np.isfinite(flow[..., 0]) & ~covis
    inside = occluded & (np.abs(flow).max(-1) < SIZE)
    if inside.sum() > 20:
        assert _photometric_error(pair, flow, inside) > err


def test_covisible_mask_matches_reprojection_score():
    pair = _pair()
    _, covis = optical_flow(pair.depth1, pair.K1, pair.cam2world1, pair.depth2, pair.K2, pair.cam2world2)
    scores = reprojection_covisibility(pair.depth1, pair.depth2, pair.K1, pair.K2, pair.cam2world1, pair.cam2world2)
    assert covis.mean() == pytest.approx(scores.one_to_two_hw)


def test_identical_views_have_zero_flow_and_identity_pose():
    pair = _pair()
    flow, covis = optical_flow(pair.depth1, pair.K1, pair.cam2world1, pair.depth1, pair.K1, pair.cam2world1)
    assert covis.all()
    assert np.abs(flow).max() < 1e-3
    assert np.allclose(relative_pose(pair.cam2world1, pair.cam2world1), np.eye(4))


def test_relative_pose_maps_camera1_points_into_camera2():
    pair = _pair()
    T21 = relative_pose(pair.cam2world1, pair.cam2world2)
    p_cam1 = np.array([0.3, -0.2, 2.0])
    world = pair.cam2world1[:3, :3] @ p_cam1 + pair.cam2world1[:3, 3]
    p_cam2 = pair.cam2world2[:3, :3].T @ (world - pair.cam2world2[:3, 3])
    assert np.allclose(T21[:3, :3] @ p_cam1 + T21[:3, 3], p_cam2)


def test_crop_keeps_flow():
    pair = _pair()
    flow, covis = optical_flow(pair.depth1, pair.K1, pair.cam2world1, pair.depth2, pair.K2, pair.cam2world2)
    c = crop_pair(pair, 8, 4, 48)
    flow_c, covis_c = optical_flow(c.depth1, c.K1, c.cam2world1, c.depth2, c.K2, c.cam2world2)
    both = covis_c & covis[8:56, 4:52]
    assert both.sum() > 100
    assert np.allclose(flow_c[both], flow[8:56, 4:52][both], atol=1e-3)
    with pytest.raises(ValueError, match="does not fit"):
        crop_pair(pair, 20, 0, 48)


def test_bad_inputs_raise():
    pair = _pair()
    bad_pose = pair.cam2world2.copy()
    bad_pose[0, 0] = np.nan
    with pytest.raises(ValueError, match="cam2world2.*NaN"):
        optical_flow(pair.depth1, pair.K1, pair.cam2world1, pair.depth2, pair.K2, bad_pose)
    with pytest.raises(ValueError, match="depth1"):
        PairSample(key="k", scene_id="s", img1=pair.img1, img2=pair.img2, depth1=pair.depth1[:10],
                   depth2=pair.depth2, K1=pair.K1, K2=pair.K2, cam2world1=pair.cam2world1,
                   cam2world2=pair.cam2world2)


def analytic_record(scene_id: str, index: int, seed: int = 0):
    """A :class:`rendering.pair.PairRecord` of the ray-cast room from two random nearby cameras."""
    from rendering.pair import CovisScores, PairRecord

    rng = np.random.default_rng([seed, index, len(scene_id)])
    K = intrinsics_from_fov(SIZE, SIZE, 60.0)
    eye1 = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-0.5, 0.8), rng.uniform(1.8, 2.6)])
    target = np.array([rng.uniform(-0.5, 0.5), -1.0, rng.uniform(-0.5, 0.5)])
    for _ in range(20):  # like the real sampler: redraw the second view until the views overlap
        eye2 = eye1 + rng.normal(0, 0.4, 3)
        poses = [look_at(eye1, target), look_at(eye2, target + rng.normal(0, 0.2, 3))]
        views = [_render(K, p) for p in poses]
        s = reprojection_covisibility(views[0][1], views[1][1], K, K, poses[0], poses[1])
        if s.score > 0.4:
            break
    else:
        raise AssertionError("no overlapping second view in 20 draws")
    return PairRecord(
        scene_id=scene_id, scene_uri=f"analytic:{scene_id}", pair_index=index, seed=seed, renderer="raycast",
        img1=np.clip(views[0][0], 0, 255).astype(np.uint8), img2=np.clip(views[1][0], 0, 255).astype(np.uint8),
        depth1=views[0][1], depth2=views[1][1], K1=K, K2=K.copy(), cam2world1=poses[0], cam2world2=poses[1],
        covis=s, attempts=1,
    )


def write_val_corpus(corpus_dir, scenes=("scene-a", "scene-b"), pairs_per_scene=3, image_format="png"):
    """A tiny corpus with only a val split, in the shard schema, from ray-cast pairs, and the
    manifest columns that list its shards (key, shard, split)."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from rendering.layout import CorpusLayout
    from rendering.shards import ShardWriter, encode_sample, shard_path

    rows = {"key": [], "shard": [], "split": []}
    for s, scene in enumerate(scenes):
        path = shard_path(corpus_dir, "val", s)
        with ShardWriter(path) as writer:
            for i in range(pairs_per_scene):
                record = analytic_record(scene, i, seed=s)
                writer.write(f"{scene}-{i:08d}", encode_sample(record, f"{scene}-{i:08d}", image_format))
                rows["key"].append(f"{scene}-{i:08d}")
                rows["shard"].append(Path(path).relative_to(corpus_dir).as_posix())
                rows["split"].append("val")
            writer.close()
    pq.write_table(pa.table(rows), CorpusLayout(corpus_dir).manifest)

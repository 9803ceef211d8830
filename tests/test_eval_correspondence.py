"""Zero-shot correspondence: exact features give recall 1, shuffled ones chance, hand-made
thresholds and bins, and the covisible-pixel ground truth of a known camera motion."""

import numpy as np
import pytest

from evaluation.correspondence import (
    PatchQueries,
    bin_index,
    correspondence_metrics,
    patch_queries,
)
from evaluation.val_split import task_arrays
from evaluation.ground_truth import PairSample
from rendering.camera import unproject_depth

SIZE, PATCH, FOCAL, DEPTH = 32, 4, 32.0, 2.0
GRID = SIZE // PATCH


def _plane_pair(shift_patches: int, key: str = "p", yaw_deg: float = 0.0) -> PairSample:
    """A fronto-parallel textured plane at DEPTH m; camera 2 moved right so the image shifts left
    by exactly ``shift_patches`` patches (optionally turned about the optical axis)."""
    K = np.array([[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1]], float)
    pose1 = np.eye(4)
    pose2 = np.eye(4)
    pose2[0, 3] = shift_patches * PATCH * DEPTH / FOCAL
    if yaw_deg:
        a = np.radians(yaw_deg)
        pose2[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rng = np.random.default_rng(len(key))
    img = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    depth = np.full((SIZE, SIZE), DEPTH, np.float32)
    img2 = np.ascontiguousarray(np.roll(img, -shift_patches * PATCH, axis=1))  # the texture moves with the plane
    return PairSample(key, "scene", img, img2, depth, depth.copy(), K, K.copy(), pose1, pose2)


def _point_features(depth, K, pose) -> np.ndarray:
    """Per-patch feature = random Fourier features of the patch-centre pixel's 3-D world point."""
    points = unproject_depth(depth, K, pose)  # (H, W, 3)
    idx = np.arange(GRID) * PATCH + PATCH // 2
    p = points[idx][:, idx].reshape(-1, 3)
    freqs = np.random.default_rng(0).normal(0, 3.0, (3, 32))
    return np.concatenate([np.cos(p @ freqs), np.sin(p @ freqs)], axis=-1)


def _arrays_and_features(pairs):
    data = task_arrays(pairs, "correspondence", SIZE)
    a = data.arrays
    # task_arrays lists both directions of each pair: rebuild each direction's geometry
    feats1, feats2 = [], []
    for p in pairs:
        for d1, K1, c1, d2, K2, c2 in ((p.depth1, p.K1, p.cam2world1, p.depth2, p.K2, p.cam2world2),
                                       (p.depth2, p.K2, p.cam2world2, p.depth1, p.K1, p.cam2world1)):
            feats1.append(_point_features(d1, K1, c1))
            feats2.append(_point_features(d2, K2, c2))
    return a, np.stack(feats1), np.stack(feats2)


def test_ground_truth_of_a_known_shift_lands_k_patches_over():
    a = task_arrays([_plane_pair(2)], "correspondence", SIZE).arrays
    q = patch_queries(a["flow"], a["valid"], PATCH)
    # direction 1->2: the image moves left by 2 patches; the two leftmost patch columns leave view 2
    grid_valid = q.valid[0].reshape(GRID, GRID)
    assert grid_valid[:, :2].sum() == 0 and grid_valid[:, 2:].all()
    shift = q.target[0] - q.centres
    assert np.allclose(shift[q.valid[0]], [-2 * PATCH, 0], atol=1e-6)
    assert a["covis"][0] == pytest.approx((GRID - 2) / GRID)


def test_features_of_the_3d_point_give_recall_one():
    pairs = [_plane_pair(k, key=f"p{k}") for k in (1, 2, 3)]
    a, f1, f2 = _arrays_and_features(pairs)
    q = patch_queries(a["flow"], a["valid"], PATCH)
    for matching in ("one_way", "mutual"):
        m = correspondence_metrics(f1, f2, q, PATCH, a["covis"], a["rotation_deg"], matching)
        assert m["recall_1p"] == 1.0 and m["recall_8p"] == 1.0
        assert m["median_epe"] == pytest.approx(0.0, abs=1e-6)
        assert m["matched_fraction"] == 1.0
        assert m["n_points"] == int(q.valid.sum())
        assert m["chance_recall_1p"] < 0.2  # a random match is rarely this close
        assert m["zero_motion_median_epe"] == pytest.approx(2 * PATCH)  # the median shift: 2 patches


def test_shuffled_features_give_chance_level():
    pairs = [_plane_pair(k, key=f"s{k}") for k in (1, 2, 1, 2, 1, 2)]
    a, f1, f2 = _arrays_and_features(pairs)
    q = patch_queries(a["flow"], a["valid"], PATCH)
    recalls = []
    for trial in range(20):
        g = np.random.default_rng(100 + trial)
        shuffled = np.stack([f[g.permutation(len(f))] for f in f2])
        m = correspondence_metrics(f1, shuffled, q, PATCH, a["covis"], a["rotation_deg"])
        recalls.append(m["recall_2p"])
    chance = m["chance_recall_2p"]
    assert 0.05 < chance < 0.5
    assert abs(np.mean(recalls) - chance) < 0.03  # mean over 20 shuffles, each ~500 queries
    exact = correspondence_metrics(f1, f2, q, PATCH, a["covis"], a["rotation_deg"])
    assert exact["recall_2p"] == 1.0 > np.max(recalls)


def _hand_made(errors_px: list[float], covis: list[float], rotation: list[float]):
    """One query per pair at the first of two candidates; its true landing point is ``error`` px
    from the candidate its (one-hot) feature matches."""
    n = len(errors_px)
    centres = np.array([[0.5, 0.5], [100.5, 0.5]])
    target = np.stack([[[0.5 + e, 0.5], [np.nan, np.nan]] for e in errors_px])
    valid = np.zeros((n, 2), bool)
    valid[:, 0] = True
    q = PatchQueries(centres, target, valid)
    f1 = np.tile(np.array([[1.0, 0.0], [0.0, 1.0]]), (n, 1, 1))
    return q, f1, f1.copy(), np.asarray(covis), np.asarray(rotation)


def test_thresholds_are_inclusive_multiples_of_the_patch_width():
    # patch 4: thresholds 4, 8, 16, 32 px
    q, f1, f2, covis, rot = _hand_made([0.0, 4.0, 5.0, 16.0, 33.0], [0.9] * 5, [5.0] * 5)
    m = correspondence_metrics(f1, f2, q, 4, covis, rot)
    assert m["thresholds_px"] == {"recall_1p": 4.0, "recall_2p": 8.0, "recall_4p": 16.0, "recall_8p": 32.0}
    assert m["recall_1p"] == pytest.approx(2 / 5)
    assert m["recall_2p"] == pytest.approx(3 / 5)
    assert m["recall_4p"] == pytest.approx(4 / 5)
    assert m["recall_8p"] == pytest.approx(4 / 5)
    assert m["median_epe"] == pytest.approx(5.0)
    assert m["zero_motion_median_epe"] == pytest.approx(5.0)  # the query's own position is candidate 0
    assert m["zero_motion_recall_1p"] == pytest.approx(2 / 5) and m["zero_motion_recall_8p"] == pytest.approx(4 / 5)


def test_bins_by_covisibility_and_rotation():
    q, f1, f2, covis, rot = _hand_made([0.0, 0.0, 50.0, 50.0], [0.3, 0.45, 0.7, 1.0], [5.0, 20.0, 40.0, 180.0])
    m = correspondence_metrics(f1, f2, q, 4, covis, rot, covis_bins=(0.0, 0.5, 1.0), rotation_bins=(0.0, 30.0, 180.0))
    by_covis = m["bins"]["covis"]
    assert list(by_covis) == ["[0, 0.5)", "[0.5, 1]"]
    assert by_covis["[0, 0.5)"]["recall_1p"] == 1.0 and by_covis["[0, 0.5)"]["n_pairs"] == 2
    assert by_covis["[0.5, 1]"]["recall_1p"] == 0.0 and by_covis["[0.5, 1]"]["n_points"] == 2  # 1.0 in the last bin
    by_rot = m["bins"]["rotation_deg"]
    assert by_rot["[0, 30)"]["recall_1p"] == 1.0 and by_rot["[30, 180]"]["median_epe"] == pytest.approx(50.0)


def test_empty_bin_and_bin_index_edges():
    assert bin_index(np.array([-0.1, 0.0, 0.5, 1.0, 1.1, np.nan]), (0.0, 0.5, 1.0)).tolist() == [-1, 0, 1, 1, -1, -1]
    q, f1, f2, covis, rot = _hand_made([0.0], [0.9], [5.0])
    m = correspondence_metrics(f1, f2, q, 4, covis, rot, covis_bins=(0.0, 0.5, 1.0))
    assert m["bins"]["covis"]["[0, 0.5)"] == {"n_points": 0, "n_pairs": 0}


def test_mutual_matching_counts_a_non_mutual_query_as_a_miss():
    centres = np.array([[0.5, 0.5], [8.5, 0.5]])
    q = PatchQueries(centres, np.array([[[0.5, 0.5], [8.5, 0.5]]]), np.array([[True, True]]))
    f1 = np.array([[[1.0, 0.0], [0.9, 0.1]]])  # both queries prefer candidate 0; it prefers query 0
    f2 = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    one_way = correspondence_metrics(f1, f2, q, 4, np.ones(1), np.zeros(1), "one_way")
    mutual = correspondence_metrics(f1, f2, q, 4, np.ones(1), np.zeros(1), "mutual")
    assert one_way["matched_fraction"] == 1.0 and one_way["recall_1p"] == 0.5
    assert mutual["matched_fraction"] == 0.5 and mutual["recall_1p"] == 0.5 and mutual["median_epe"] == 0.0


def test_bad_inputs_are_named():
    q, f1, f2, covis, rot = _hand_made([0.0], [0.9], [5.0])
    with pytest.raises(ValueError, match="unknown matching 'nearest'"):
        correspondence_metrics(f1, f2, q, 4, covis, rot, "nearest")
    with pytest.raises(ValueError, match="covis_bins: bin edges must be"):
        correspondence_metrics(f1, f2, q, 4, covis, rot, covis_bins=(0.5, 0.5))
    with pytest.raises(ValueError, match="do not match 1 pairs x 2 patches"):
        correspondence_metrics(f1[:, :1], f2, q, 4, covis, rot)
    with pytest.raises(ValueError, match="not a square multiple of patch 5"):
        patch_queries(np.zeros((1, 32, 32, 2)), np.ones((1, 32, 32), bool), 5)

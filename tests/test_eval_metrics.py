import numpy as np
import pytest

from evaluation.metrics import (
    depth_metrics,
    direction_error_deg,
    flow_metrics,
    pose_metrics,
    rotation_error_deg,
    rotation_from_axis_angle,
)


def test_depth_metrics_known_values():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # last pixel invalid
    pred = np.array([[1.1, 2.0], [2.0, 123.0]])
    m = depth_metrics(pred, gt)
    assert m["n_pixels"] == 3
    assert m["abs_rel"] == pytest.approx((0.1 + 0.0 + 0.5) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 0 + 4.0) / 3))
    assert m["delta1"] == pytest.approx(2 / 3)  # 1.1 ok, 2.0 ok, 2 vs 4 (ratio 2) fails


def test_depth_median_scaling_removes_global_scale():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, size=(2, 8, 8))
    pred = gt * np.array([3.0, 0.5])[:, None, None]
    assert depth_metrics(pred, gt)["delta1"] == 0.0
    scaled = depth_metrics(pred, gt, median_scaling=True)
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert scaled["delta1"] == 1.0


def test_depth_metrics_bad_input():
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="no pixel"):
        depth_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        depth_metrics(np.full((2, 2), np.nan), np.ones((2, 2)))


def test_flow_metrics_known_values():
    gt = np.zeros((1, 4, 2))
    pred = np.array([[[0.0, 0.0], [0.6, 0.8], [3.0, 4.0], [100.0, 0.0]]])
    mask = np.array([[True, True, True, False]])
    m = flow_metrics(pred, gt, mask)
    assert m["epe"] == pytest.approx((0 + 1.0 + 5.0) / 3)
    assert m["bad1"] == pytest.approx(1 / 3)  # only 5.0 > 1 (1.0 is not > 1)
    assert m["bad3"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="covisible"):
        flow_metrics(pred, gt, np.zeros((1, 4), bool))


def test_rotation_and_direction_errors():
    r = rotation_from_axis_angle([0, 1, 0], 30.0)
    assert rotation_error_deg(r, np.eye(3)) == pytest.approx(30.0)
    assert rotation_error_deg(r, r) == pytest.approx(0.0, abs=1e-5)
    assert direction_error_deg(np.array([1.0, 0, 0]), np.array([0, 0, 2.0])) == pytest.approx(90.0)
    assert direction_error_deg(np.array([3.0, 0, 0]), np.array([1.0, 0, 0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="zero"):
        direction_error_deg(np.zeros(3), np.ones(3))


def test_pose_metrics_median_and_accuracy():
    angles = [1.0, 4.0, 8.0, 20.0]
    r_gt = np.stack([np.eye(3)] * 4)
    r_pred = np.stack([rotation_from_axis_angle([1, 0, 0], a) for a in angles])
    t = np.tile([0.0, 0.0, 1.0], (4, 1))
    m = pose_metrics(r_pred, t, r_gt, t)
    assert m["rot_err_deg"] == pytest.approx(6.0)
    assert m["trans_err_deg"] == pytest.approx(0.0, abs=1e-5)
    assert m["acc5"] == 0.5 and m["acc10"] == 0.75
    with pytest.raises(ValueError, match="same non-zero number"):
        pose_metrics(r_pred[:2], t, r_gt, t)

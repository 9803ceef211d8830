"""Pair mining on rendered sequences read back through the capture readers."""

from __future__ import annotations

import numpy as np
import pytest

from rendering.captures import read_sequence
from rendering.captures.materialise import materialise_pair
from rendering.captures.record import CaptureSequence
from rendering.covisibility import reprojection_covisibility
from rendering.backends.embedded import EmbeddedRenderer
from rendering.mining import MiningConfig, crop_intrinsics, crop_window, mine_sequence, score_candidates
from tests.capture_layouts import render_sequence, write_arkitscenes, write_frames_jsonl, write_scannet, write_tum
from rendering.captures.record import to_integer_centres

LOOSE = MiningConfig(frame_stride=1, max_frame_gap=10, min_covis=0.2, max_covis=1.0, min_baseline_m=0.0,
                     max_exact_per_frame=100, max_pairs_per_frame=100, duplicate_translation_m=0.0,
                     duplicate_rotation_deg=0.0)


@pytest.fixture(scope="module")
def rendered():
    with EmbeddedRenderer() as renderer:
        return render_sequence(renderer, n=8)


def _truth_scores(rendered, i, j, quantum=None):
    d1, d2 = rendered.frames[i].depth, rendered.frames[j].depth
    if quantum is not None:
        d1 = (np.rint(d1.astype(np.float64) / quantum) * quantum).astype(np.float32)
        d2 = (np.rint(d2.astype(np.float64) / quantum) * quantum).astype(np.float32)
    return reprojection_covisibility(d1, d2, rendered.K_depth, rendered.K_depth,
                                     rendered.frames[i].cam2world, rendered.frames[j].cam2world)


@pytest.mark.parametrize("layout", ["scannet", "arkitscenes", "tum", "frames"])
def test_mined_scores_equal_the_renderers_exact_depth_scores(rendered, tmp_path, layout):
    if layout == "scannet":
        seq, quantum = read_sequence("scannet", write_scannet(tmp_path / "scene0002_00", rendered)), 0.001
    elif layout == "arkitscenes":
        seq, quantum = read_sequence("arkitscenes", write_arkitscenes(tmp_path, rendered)), 0.001
    elif layout == "frames":
        seq, quantum = read_sequence("frames", write_frames_jsonl(tmp_path / "seq", rendered, depth_scale=0.0005)), 0.0005
    else:
        seq = read_sequence("tum", write_tum(tmp_path, rendered), intrinsics=to_integer_centres(rendered.K_depth))
        quantum = 1 / 5000
    pairs, stats = mine_sequence(seq, LOOSE)
    assert stats.candidates == 8 * 7 // 2 and stats.scored == stats.candidates - stats.rejected.get("frustum_overlap", 0)
    assert len(pairs) >= 4 and stats.accepted == len(pairs)
    for pair in pairs:
        # same depth units as stored on disk: identical; the renderer's float depth: within the rounding
        assert pair.covis == _truth_scores(rendered, pair.first, pair.second, quantum)
        exact = _truth_scores(rendered, pair.first, pair.second)
        assert abs(pair.covis.score - exact.score) < 0.01
        assert 0.2 <= pair.covis.score <= 1.0


def test_prefilters_drop_only_candidates_that_could_not_reach_the_band(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0003_00", rendered))
    config = LOOSE.model_copy(update={"min_covis": 0.6, "frustum_margin": 0.05})
    without = score_candidates(seq, config.model_copy(update={"prefilters": False}))
    with_filters = score_candidates(seq, config)
    in_band = lambda pairs: {(p.first, p.second) for p in pairs if p.covis.score >= 0.6}
    assert len(with_filters) < len(without)
    assert in_band(with_filters) == in_band(without)


def test_diversity_caps_pairs_per_frame_and_drops_near_duplicates(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0004_00", rendered))
    capped, stats = mine_sequence(seq, LOOSE.model_copy(update={"max_pairs_per_frame": 1}))
    frames = [f for p in capped for f in (p.first, p.second)]
    assert len(frames) == len(set(frames)) and len(capped) >= 2
    assert stats.rejected["frame_pair_cap"] > 0 and stats.scored < len(score_candidates(seq, LOOSE))  # lazy
    # the camera moves ~0.15 m per frame: with a 0.2 m duplicate radius, (i, j) and (i+1, j+1) collide
    dedup, stats = mine_sequence(seq, LOOSE.model_copy(update={"duplicate_translation_m": 0.2,
                                                                "duplicate_rotation_deg": 90.0}))
    everything, _ = mine_sequence(seq, LOOSE)
    assert len(dedup) < len(everything) and stats.rejected["near_duplicate"] > 0
    positions = np.stack([f.cam2world[:3, 3] for f in seq.frames])
    for a in dedup:
        for b in dedup:
            if a is not b:
                near1 = np.linalg.norm(positions[a.first] - positions[b.first]) <= 0.2
                near2 = np.linalg.norm(positions[a.second] - positions[b.second]) <= 0.2
                assert not (near1 and near2)


def test_two_threads_mine_the_same_pairs(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0010_00", rendered))
    one, stats_one = mine_sequence(seq, LOOSE)
    two, stats_two = mine_sequence(seq, LOOSE, threads=2)
    assert one == two and stats_one.rejected == stats_two.rejected and len(one) > 0


@pytest.mark.parametrize("prefilters", [True, False])
def test_every_candidate_is_accepted_or_rejected_once(rendered, tmp_path, prefilters):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0009_00", rendered))
    config = MiningConfig(frame_stride=1, max_frame_gap=10, min_covis=0.3, max_pairs_per_frame=2,
                          max_exact_per_frame=3, prefilters=prefilters)
    pairs, stats = mine_sequence(seq, config)
    assert stats.candidates == 28 and stats.accepted == len(pairs) == stats.in_band
    assert sum(stats.rejected.values()) + stats.accepted == stats.candidates
    assert all(0.3 <= p.covis.score for p in pairs)


def test_band_spread_prefers_the_least_filled_bin(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0005_00", rendered))
    config = LOOSE.model_copy(update={"band_bins": 4, "max_pairs": 4})
    chosen, _ = mine_sequence(seq, config)
    width = (config.max_covis - config.min_covis) / 4
    bin_of = lambda p: min(3, int((p.covis.score - config.min_covis) / width))
    available = {bin_of(p) for p in score_candidates(seq, LOOSE) if p.covis.score >= config.min_covis}
    assert len(chosen) == 4 and len({bin_of(p) for p in chosen}) >= min(3, len(available))


def test_sensor_noise_lowers_scores_smoothly_and_never_crashes(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0006_00", rendered))
    exhaustive = LOOSE.model_copy(update={"prefilters": False})
    scored = {(p.first, p.second): p.covis.score for p in score_candidates(seq, exhaustive)}
    rng = np.random.default_rng(0)
    means = []
    for level in (0.0, 0.01, 0.03, 0.06):
        def noisy(frame, level=level):
            from rendering.captures import load_depth

            depth = load_depth(frame)
            depth = depth * (1 + rng.normal(0, level, depth.shape)).astype(np.float32)
            depth[rng.random(depth.shape) < 3 * level] = 0.0  # holes
            return np.clip(depth, 0, None)
        frames = []
        for f in seq.frames:  # small pose error, growing with the noise level
            pose = f.cam2world.copy()
            pose[:3, 3] += rng.normal(0, level * 0.1, 3)
            frames.append(type(f)(**{**f.__dict__, "cam2world": pose}))
        noisy_seq = CaptureSequence(seq.dataset, seq.sequence_id, seq.root, tuple(frames))
        pairs = score_candidates(noisy_seq, exhaustive, load=noisy)
        means.append(np.mean([p.covis.score for p in pairs]))
        assert all(0.0 <= p.covis.score <= 1.0 for p in pairs)
    assert means[0] == pytest.approx(np.mean(list(scored.values())), abs=0.02)
    assert all(a >= b for a, b in zip(means, means[1:]))  # monotone in the noise level
    assert all(a - b < 0.2 for a, b in zip(means, means[1:]))  # no cliff


def test_crops_cover_the_covisible_box_with_the_output_aspect_and_move_K():
    window = crop_window((10, 20, 30, 30), (64, 48), (32, 32))
    x0, y0, x1, y1 = window
    assert x1 - x0 == y1 - y0 and x0 <= 10 and y0 <= 20 and x1 >= 30 and y1 >= 30
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    K2 = crop_intrinsics(K, window, (32, 32))
    scale = 32 / (x1 - x0)
    point = np.array([0.3, -0.1, 2.0])
    uv = K @ point / point[2]
    uv2 = K2 @ point / point[2]
    assert uv2[:2] == pytest.approx([(uv[0] - x0) * scale, (uv[1] - y0) * scale])
    assert crop_window(None, (64, 48), (32, 32)) == (8, 0, 56, 48)
    assert crop_window((0, 0, 64, 48), (64, 48), (64, 48)) == (0, 0, 64, 48)


def test_materialised_crops_keep_depth_consistent_with_the_adjusted_K(rendered, tmp_path):
    seq = read_sequence("scannet", write_scannet(tmp_path / "scene0008_00", rendered))
    pairs, _ = mine_sequence(seq, LOOSE)
    record, extra = materialise_pair(seq, pairs[0], 0, seed=0, out_size=(24, 24), crops=True)
    assert record.depth1.shape == (24, 24) and record.img1.shape == (24, 24, 3)
    assert extra["source"]["frame_ids"] == [seq.frames[pairs[0].first].frame_id, seq.frames[pairs[0].second].frame_id]
    # the cropped views still agree geometrically: their own co-visibility is high
    again = reprojection_covisibility(record.depth1, record.depth2, record.K1, record.K2,
                                      record.cam2world1, record.cam2world2)
    assert again.score > 0.3


@pytest.mark.slow
def test_the_mining_path_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, rendering.captures, rendering.captures.materialise, rendering.mining, "
            "pipeline.corpus.mine, pipeline.mine_config; assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

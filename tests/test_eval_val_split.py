import numpy as np
import pytest

from evaluation.val_split import MissingValSplitError, fit_pair, read_val_pairs, split_by_scene, task_arrays
from evaluation.ground_truth import pair_flow, warp_by_flow
from test_eval_ground_truth import write_val_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_val_corpus(root)
    return root


def test_read_and_split_by_scene(corpus):
    pairs = read_val_pairs(corpus)
    assert len(pairs) == 6 and pairs[0].depth1.dtype == np.float32
    assert len(read_val_pairs(corpus, max_pairs=4)) == 4
    train, test, how = split_by_scene(pairs, 0.5)
    assert how == "scene"
    assert {p.scene_id for p in train}.isdisjoint({p.scene_id for p in test})
    assert len(train) == len(test) == 3
    one_scene = [p for p in pairs if p.scene_id == "scene-a"]
    train, test, how = split_by_scene(one_scene, 0.5)
    assert how == "pair" and len(train) + len(test) == 3 and test


def test_resized_ground_truth_still_warps(corpus):
    pair = read_val_pairs(corpus)[0]
    small = fit_pair(pair, 32)
    assert small.img1.shape == (32, 32, 3) and small.K1[0, 2] == pytest.approx(16.0)
    flow, covis = pair_flow(small)
    good = covis.copy()
    good[[0, -1]] = False
    good[:, [0, -1]] = False
    assert good.sum() > 50
    warped = warp_by_flow(small.img2.astype(np.float32), flow)
    err = np.abs(warped - small.img1)[good].mean()
    bad = np.abs(warp_by_flow(small.img2.astype(np.float32), flow + 2.0) - small.img1)[good].mean()
    assert err < 10.0 and bad > 1.5 * err, (err, bad)


def test_task_arrays(corpus):
    pairs = read_val_pairs(corpus)
    depth = task_arrays(pairs, "depth", 32)
    assert depth.arrays["img1"].shape == (12, 32, 32, 3) and depth.arrays["depth"].shape == (12, 32, 32)
    flow = task_arrays(pairs, "flow", 32)
    assert flow.arrays["flow"].shape[1:] == (32, 32, 2) and flow.arrays["valid"].any()
    assert np.all(np.isfinite(flow.arrays["flow"]))
    pose = task_arrays(pairs, "pose", 32)
    assert np.allclose(np.linalg.norm(pose.arrays["direction"], axis=1), 1.0)
    # both directions of a pair: R21 and R12 are inverses
    assert np.allclose(pose.arrays["rotation"][0] @ pose.arrays["rotation"][1], np.eye(3), atol=1e-6)
    with pytest.raises(ValueError, match="allowed: depth, flow, pose"):
        task_arrays(pairs, "normals", 32)


def test_missing_val_split(tmp_path):
    (tmp_path / "shards" / "train").mkdir(parents=True)
    with pytest.raises(MissingValSplitError, match="has no val split"):
        read_val_pairs(tmp_path)


def test_val_shards_are_the_ones_the_manifest_lists(corpus, tmp_path):
    import shutil

    from evaluation.val_split import val_shards

    copy = tmp_path / "c"
    shutil.copytree(corpus, copy)
    listed = val_shards(copy)
    assert [p.relative_to(copy).as_posix() for p in listed] == ["shards/val/pairs-000000.tar",
                                                                 "shards/val/pairs-000001.tar"]
    # a shard file the manifest does not list (a leftover copy) is never read
    shutil.copy(copy / "shards/val/pairs-000000.tar", copy / "shards/val/pairs-000007.tar")
    assert val_shards(copy) == listed and len(read_val_pairs(copy)) == 6
    # a listed shard that is gone is named, not silently skipped
    (copy / "shards/val/pairs-000001.tar").unlink()
    with pytest.raises(MissingValSplitError, match=r"are missing, e.g. \['shards/val/pairs-000001.tar'\]"):
        read_val_pairs(copy)

"""Cross-view gain: > 0 for an oracle that copies the reference view at the true location, 0 for
one that ignores it, undefined for MAE; logged during pretraining."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from training.cross_view import CrossViewUndefined, cross_view_gain, mismatched_order, seeded_masks
from training.models import build_model
from training.models.croco import normalised_patch_mse
from training.models.layers import patchify

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PATCH, SIZE, SHIFT = 4, 32, 2  # view 2 = view 1 moved left by SHIFT patches


@dataclass
class Out:
    loss: torch.Tensor


class CopyOracle(nn.Module):
    """Predicts each masked patch of view 1 as view 2's patch at the ground-truth location."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, img1, img2, mask):
        back = torch.roll(img2, shifts=SHIFT * PATCH, dims=-1)  # undo the known motion
        pred = patchify(back, PATCH)
        pred = (pred - pred.mean(-1, keepdim=True)) / (pred.var(-1, keepdim=True) + 1e-6) ** 0.5
        return Out(normalised_patch_mse(pred, img1, mask, PATCH)[0])


class BlindOracle(CopyOracle):
    """Predicts from view 1 alone (its visible patches' mean), never looking at view 2."""

    def forward(self, img1, img2, mask):
        patches = patchify(img1, PATCH)
        visible = (~mask).float()[..., None]
        mean = (patches * visible).sum(1, keepdim=True) / visible.sum(1, keepdim=True)
        pred = mean.expand_as(patches)
        pred = (pred - pred.mean(-1, keepdim=True)) / (pred.var(-1, keepdim=True) + 1e-6) ** 0.5
        return Out(normalised_patch_mse(pred, img1, mask, PATCH)[0])


def _pairs(n: int = 8):
    g = torch.Generator().manual_seed(0)
    img1 = torch.randn(n, 3, SIZE, SIZE, generator=g)
    img2 = torch.roll(img1, shifts=-SHIFT * PATCH, dims=-1)
    mask = seeded_masks(n, (SIZE // PATCH) ** 2, 0.9, seed=3)
    return img1, img2, mask


def test_gain_is_positive_for_the_copy_oracle():
    img1, img2, mask = _pairs()
    out = cross_view_gain(CopyOracle(), img1, img2, mask, batch_size=3)
    assert out["loss_true"] < 1e-6
    assert out["loss_mismatched"] > 0.5 and out["gain"] > 0.5 and out["relative_gain"] == pytest.approx(1.0, abs=1e-5)
    assert out["n_pairs"] == 8


def test_gain_is_zero_for_an_oracle_that_ignores_the_reference():
    img1, img2, mask = _pairs()
    out = cross_view_gain(BlindOracle(), img1, img2, mask)
    assert out["loss_true"] > 0.5
    assert out["gain"] == pytest.approx(0.0, abs=1e-9)


def test_same_masks_for_both_references_and_seeded():
    assert torch.equal(seeded_masks(4, 16, 0.75, 1), seeded_masks(4, 16, 0.75, 1))
    assert seeded_masks(4, 16, 0.75, 1).sum(1).tolist() == [12] * 4
    assert seeded_masks(2, 64, 0.9, 1).sum(1).tolist() == [57] * 2  # floor(0.9 x 64), as the model masks
    assert mismatched_order(5).tolist() == [2, 3, 4, 0, 1]
    with pytest.raises(ValueError, match="at least 2 pairs"):
        mismatched_order(1)


def test_real_croco_gain_is_finite_and_mae_is_undefined():
    torch.manual_seed(0)
    img1, img2, _ = _pairs(4)
    croco = build_model("croco_v2", "test")
    mask = seeded_masks(4, croco.patch_embed.num_patches, croco.mask_ratio, 0)
    out = cross_view_gain(croco, img1, img2, mask)
    assert np.isfinite(out["gain"]) and out["loss_true"] > 0
    assert croco.training  # the training mode is restored
    with pytest.raises(CrossViewUndefined, match="MAENet has no reference view"):
        cross_view_gain(build_model("mae", "test"), img1, img2, mask)


@pytest.mark.slow
def test_pretraining_logs_the_gain_on_held_out_pairs(tmp_path):
    from training.config import PretrainConfig
    from training.synthetic import write_synthetic_corpus
    from training.train import train

    corpus = tmp_path / "corpus"
    write_synthetic_corpus(corpus, shards=1, pairs_per_shard=8, size=40)
    write_synthetic_corpus(corpus, shards=1, pairs_per_shard=4, size=40, split="val", seed=1)
    cfg = PretrainConfig(methods=["croco_v1"], preset="test", batch_size=4, epochs=2, steps_per_epoch=4,
                         warmup_epochs=0, log_every=2, cross_view_every=2, cross_view_pairs=4, num_workers=0,
                         shuffle_buffer=4, tensorboard=False, checkpoint_every=100, figure_every=100)
    train(cfg, "croco_v1", corpus, tmp_path / "out")
    records = [json.loads(ln) for ln in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all("loss" in r and np.isfinite(r["cross_view_gain"]) for r in records)
    assert all(r["cross_view_loss_mismatched"] - r["cross_view_loss_true"] == pytest.approx(r["cross_view_gain"])
               for r in records)


def test_cross_view_interval_must_align_with_logging():
    from training.config import PretrainConfig

    with pytest.raises(ValueError, match="cross_view_every 15 must be a multiple of log_every 10"):
        PretrainConfig(cross_view_every=15, log_every=10)
    assert PretrainConfig(cross_view_every=0, log_every=7).cross_view_every == 0


def test_held_out_views_come_round_robin_from_the_val_shards(tmp_path):
    from rendering.shards import read_shard
    from training.cross_view import centre_crop, held_out_views
    from training.synthetic import write_synthetic_corpus

    assert held_out_views(tmp_path, 32, 4) is None  # no val split
    shards = write_synthetic_corpus(tmp_path, shards=3, pairs_per_shard=4, size=40, split="val")
    first_two = [[centre_crop(s["img1"], 32) for s in list(read_shard(p))[:2]] for p in sorted(shards)]
    views1, views2 = held_out_views(tmp_path, 32, 5)
    assert views1.shape == (5, 32, 32, 3) and views2.shape == (5, 32, 32, 3)
    # shard 0 pair 0, shard 1 pair 0, shard 2 pair 0, shard 0 pair 1, shard 1 pair 1
    expected = [first_two[0][0], first_two[1][0], first_two[2][0], first_two[0][1], first_two[1][1]]
    assert all(np.array_equal(v, e) for v, e in zip(views1, expected))

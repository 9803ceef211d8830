"""Data loading, schedule, training loop, checkpoints and bad input (in-process, CPU)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from training.checkpoint import latest_valid, save_atomic
from training.config import PretrainConfig
from training.pair_loader import AugmentConfig, CorpusError, PairStream, colour_jitter, list_shards, make_loader
from training.models import load_backbone
from training.synthetic import write_synthetic_corpus
from training.train import load_config, lr_at, param_groups, peak_lr, train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_config(**overrides) -> PretrainConfig:
    base = dict(methods=["croco_v1"], preset="test", batch_size=8, epochs=10, steps_per_epoch=8, warmup_epochs=1,
                stop_fraction=0.5, checkpoint_every=10, log_every=1, figure_every=1000, num_workers=0,
                base_lr=0.03, shuffle_buffer=16, tensorboard=False)
    return PretrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(root, shards=2, pairs_per_shard=12, size=48)
    return root


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


# ------------------------------------------------------------------ config and schedule


def test_config_rejects_unknown_keys_and_bad_ranges(tmp_path) -> None:
    with pytest.raises(ValueError, match="extra"):
        PretrainConfig(lr=1.0)
    with pytest.raises(ValueError, match="jitter_min"):
        PretrainConfig(jitter_min=1.5, jitter_max=1.2)
    p = tmp_path / "run.toml"
    p.write_text('run_dir = "x"\n[pretrain]\npreset = "test"\nbatch_size = 4\n')
    assert load_config(p).batch_size == 4
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_config(tmp_path / "missing.json")


def test_schedule_scaling_warmup_half_cosine() -> None:
    cfg = PretrainConfig(batch_size=64, accumulation=2, epochs=10, steps_per_epoch=10, warmup_epochs=2)
    peak = peak_lr(cfg, world_size=2)
    assert peak == pytest.approx(1.5e-4 * 256 / 256)
    assert lr_at(0, cfg, peak) == pytest.approx(peak / 20)
    assert lr_at(19, cfg, peak) == pytest.approx(peak)
    assert cfg.total_steps == 50  # the paper stops halfway through the cosine
    mid = 20 + (cfg.schedule_steps - 20) // 2
    assert lr_at(mid, cfg, peak) == pytest.approx(peak / 2, rel=1e-6)
    assert all(lr_at(s, cfg, peak) >= lr_at(s + 1, cfg, peak) for s in range(20, 99))


def test_paper_warmup_is_the_default_per_method() -> None:
    v1 = PretrainConfig(epochs=800, steps_per_epoch=10)
    assert v1.warmup_epochs is None
    assert v1.warmup_steps("croco_v1") == 400 and v1.warmup_steps("mae") == 400  # 40 of 800 epochs
    v2 = PretrainConfig(epochs=250, steps_per_epoch=10)
    assert v2.warmup_steps("croco_v2") == 120  # 12 of 250 epochs
    peak = peak_lr(v2, 1)
    assert lr_at(119, v2, peak, "croco_v2") == pytest.approx(peak) and lr_at(59, v2, peak, "croco_v2") == pytest.approx(peak / 2)
    assert PretrainConfig(epochs=800, warmup_epochs=3, steps_per_epoch=10).warmup_steps("croco_v2") == 30
    with pytest.raises(ValueError, match="warmup_epochs is unset"):
        v1.warmup_steps()


def test_no_weight_decay_on_norms_and_biases_but_on_the_mask_token() -> None:
    from training.models import build_model

    model = build_model("croco_v1", "test")
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "enc_norm.weight" in no_decay_names and "patch_embed.proj.bias" in no_decay_names
    assert "enc_blocks.0.attn.qkv.bias" in no_decay_names
    assert "mask_token" in decay_names and "patch_embed.proj.weight" in decay_names  # as the reference decays it
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.05
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


# ------------------------------------------------------------------ data


def test_loader_batches_crops_and_normalisation(corpus) -> None:
    shards = list_shards(corpus, "train")
    assert len(shards) == 2
    batch = next(iter(make_loader(shards, AugmentConfig(32), batch_size=6, seed=0, shuffle_buffer=8)))
    assert batch["img1"].shape == (6, 3, 32, 32) and batch["img2"].shape == (6, 3, 32, 32)
    assert batch["bad"] == 0
    assert -3 < batch["img1"].mean() < 3 and batch["img1"].std() > 0.2
    assert not torch.allclose(batch["img1"], batch["img2"])


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_is_deterministic_and_skips_on_resume(corpus, workers) -> None:
    shards = list_shards(corpus, "train")

    def take(skip: int, n: int) -> list[torch.Tensor]:
        loader = make_loader(shards, AugmentConfig(32), 4, seed=3, num_workers=workers, shuffle_buffer=8, skip_batches=skip)
        it = iter(loader)
        return [next(it)["img1"] for _ in range(n)]

    full = take(0, 6)
    assert len({float(b.sum()) for b in full}) == 6
    assert all(torch.equal(a, b) for a, b in zip(full, take(0, 6)))
    assert all(torch.equal(a, b) for a, b in zip(full[3:], take(3, 3)))  # odd skip: workers change roles


def test_colour_jitter_stays_in_range_and_varies() -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    out = [colour_jitter(img, 0.6, 1.4, rng) for _ in range(4)]
    assert all(o.min() >= 0 and o.max() <= 1 for o in out)
    assert not np.allclose(out[0], out[1])
    assert np.allclose(colour_jitter(img, 1.0, 1.0, rng), img, atol=1e-6)


def test_every_reader_lists_a_split_from_the_manifest(tmp_path) -> None:
    from evaluation.val_split import val_shards
    from training.cross_view import held_out_views

    train = write_synthetic_corpus(tmp_path, shards=2, pairs_per_shard=2, size=32)
    val = write_synthetic_corpus(tmp_path, shards=1, pairs_per_shard=2, size=32, split="val", seed=1)
    assert list_shards(tmp_path, "train") == [str(p) for p in train]  # the second split kept the first
    assert list_shards(tmp_path, "val") == [str(p) for p in val] and val_shards(tmp_path) == val
    stray = tmp_path / "shards" / "val" / "pairs-000005.tar"  # on disk, not in the manifest
    stray.write_bytes(val[0].read_bytes())
    assert list_shards(tmp_path, "val") == [str(p) for p in val] and val_shards(tmp_path) == val
    assert held_out_views(tmp_path, 32, 4)[0].shape == (2, 32, 32, 3)  # the listed shard's 2 pairs only


def test_missing_corpus_and_empty_split_raise(tmp_path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        list_shards(tmp_path / "nope")
    tmp_path.joinpath("c").mkdir()
    with pytest.raises(CorpusError, match="no manifest.parquet"):
        list_shards(tmp_path / "c")
    pq.write_table(pa.table({"shard": ["shards/val/pairs-000000.tar"], "split": ["val"]}), tmp_path / "c" / "manifest.parquet")
    with pytest.raises(CorpusError, match="no shards for split 'train'"):
        list_shards(tmp_path / "c")
    with pytest.raises(CorpusError, match="missing"):
        list_shards(tmp_path / "c", "val")
    with pytest.raises(CorpusError, match="empty shard list"):
        PairStream([], AugmentConfig(32), 2, 0)


def test_corrupt_shard_and_bad_sample_are_counted_and_skipped(tmp_path) -> None:
    shards = write_synthetic_corpus(tmp_path, shards=2, pairs_per_shard=6, size=48)
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[: len(data) // 3])  # truncated shard
    with tarfile.open(shards[1], "a") as tar:  # a sample whose image does not decode
        info = tarfile.TarInfo("broken-00000000.img1.jpg")
        info.size = 5
        tar.addfile(info, __import__("io").BytesIO(b"junk!"))
        info = tarfile.TarInfo("broken-00000000.img2.jpg")
        info.size = 5
        tar.addfile(info, __import__("io").BytesIO(b"junk!"))
    it = iter(PairStream([str(s) for s in shards], AugmentConfig(32), 4, seed=0, shuffle_buffer=0))
    batches = [next(it) for _ in range(8)]
    assert all(b["img1"].shape == (4, 3, 32, 32) and torch.isfinite(b["img1"]).all() for b in batches)
    assert sum(b["bad"] for b in batches) >= 2


def test_all_shards_unreadable_raises(tmp_path) -> None:
    bad = tmp_path / "pairs-000000.tar"
    bad.write_bytes(b"not a tar file at all" * 10)
    it = iter(PairStream([str(bad)], AugmentConfig(32), 2, seed=0, shuffle_buffer=0))
    with pytest.raises(CorpusError, match="consecutive bad"):
        next(it)


# ------------------------------------------------------------------ training


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_outputs(corpus, tmp_path) -> None:
    out = tmp_path / "croco_v2"
    cfg = small_config(epochs=12, steps_per_epoch=8, figure_every=40, base_lr=0.05)  # 48 steps
    summary = train(cfg, "croco_v2", corpus, out)
    curve = losses(out)
    assert summary["steps"] == 48 and sorted(curve) == list(range(1, 49))
    first, last = np.mean([curve[s] for s in range(1, 5)]), np.mean([curve[s] for s in range(45, 49)])
    assert last < 0.8 * first, (first, last)
    assert (out / "figures" / "recon-00000040.png").stat().st_size > 1000
    model, info = load_backbone(out / "model.pt")
    assert info["method"] == "croco_v2" and info["step"] == 48 and model.pos_embed == "rope"
    tokens, pos, blocks = model.encode(torch.zeros(1, 3, 32, 32))
    assert tokens.shape == (1, 64, 16)


def test_mae_trains_on_pairs(corpus, tmp_path) -> None:
    summary = train(small_config(epochs=2, steps_per_epoch=3, warmup_epochs=0), "mae", corpus, tmp_path / "mae")
    assert summary["steps"] == 3 and all(np.isfinite(v) for v in losses(tmp_path / "mae").values())
    with pytest.raises(ValueError, match="not trained"):
        train(small_config(), "none", corpus, tmp_path / "none")


def test_resume_refuses_a_different_model(corpus, tmp_path) -> None:
    cfg = small_config(epochs=1, steps_per_epoch=2, warmup_epochs=0, checkpoint_every=1, stop_fraction=1.0)
    train(cfg, "croco_v1", corpus, tmp_path / "o")
    with pytest.raises(ValueError, match="written for"):
        train(cfg, "croco_v2", corpus, tmp_path / "o")


def test_bf16_autocast_path_trains_on_cpu(corpus, tmp_path) -> None:
    """The GPU's bf16 path runs here too: autocast is active and the losses stay finite."""
    from training.train import precision_context

    with precision_context("bf16", torch.device("cpu")):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    with precision_context("auto", torch.device("cpu")):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    out = tmp_path / "bf16"
    summary = train(small_config(epochs=2, steps_per_epoch=2, warmup_epochs=0, precision="bf16"), "croco_v2", corpus, out)
    assert summary["steps"] == 2 and all(np.isfinite(v) for v in losses(out).values())


def test_non_finite_loss_stops_before_any_checkpoint(corpus, tmp_path, monkeypatch) -> None:
    """Losses are read back once per log line or checkpoint (no host sync per step); a non-finite
    one stops the run and names the steps, and no checkpoint holds the broken weights."""
    import training.models.croco as croco

    real = croco.normalised_patch_mse

    def broken(pred, img, mask, patch):
        loss, target = real(pred, img, mask, patch)
        return loss * float("nan"), target

    monkeypatch.setattr(croco, "normalised_patch_mse", broken)
    cfg = small_config(epochs=2, steps_per_epoch=4, warmup_epochs=0, log_every=4, checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"croco_v1: loss is nan in steps 1-2 \(rank 0\)"):
        train(cfg, "croco_v1", corpus, tmp_path / "nan")
    assert not list((tmp_path / "nan").rglob("*.pt"))


@pytest.mark.slow
def test_compiled_model_trains_on_the_test_preset(corpus, tmp_path) -> None:
    """torch.compile of the model (not a wrapper): static shapes, unprefixed checkpoint keys."""
    out = tmp_path / "compiled"
    summary = train(small_config(epochs=2, steps_per_epoch=2, warmup_epochs=0, compile=True), "croco_v1", corpus, out)
    assert summary["steps"] == 2 and all(np.isfinite(v) for v in losses(out).values())
    model, _ = load_backbone(out / "model.pt")
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())


def test_absent_gpu_is_a_clear_error(corpus, tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="asks for device 'cuda'"):
        train(small_config(device="cuda"), "croco_v1", corpus, tmp_path / "gpu")


def test_atomic_save_leaves_no_partial_file(tmp_path) -> None:
    save_atomic({"model": {"w": torch.ones(3)}}, tmp_path / "ck" / "step-00000001.pt")
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["step-00000001.pt"]
    assert latest_valid(tmp_path / "nothing") is None


def test_tensorboard_gets_scalars_reconstructions_and_hparams(corpus, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "mae"
    cfg = small_config(epochs=1, steps_per_epoch=2, figure_every=1, tensorboard=True)
    train(cfg, "mae", corpus, out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"pretrain/loss", "pretrain/lr"} <= set(events.Tags()["scalars"])
    assert "pretrain/reconstruction" in events.Tags()["images"]
    hparams = EventAccumulator(str(out / "tensorboard" / "hparams"))
    hparams.Reload()
    assert "final/loss" in hparams.Tags()["scalars"]
    import cv2

    figure = cv2.imread(str(sorted((out / "figures").glob("recon-*.png"))[-1]))
    assert figure.shape[1] == round(2.3 * 3 * 90)  # MAE: masked input, prediction, target (no reference)

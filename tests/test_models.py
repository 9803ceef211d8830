"""CroCo v1/v2 and MAE models: sizes, masking, loss, RoPE, official key layout, feature API."""

from __future__ import annotations

import argparse

import pytest
import torch

from training.models import (
    CroCoNet,
    MAENet,
    build_model,
    load_backbone,
    load_croco_checkpoint,
    read_checkpoint,
)
from training.models.croco import normalised_patch_mse, random_mask
from training.models.layers import RoPE2D, patchify, unpatchify


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vit_block(d: int) -> int:  # qkv + proj + 2 LayerNorms + MLP(4d)
    return (3 * d * d + 3 * d) + (d * d + d) + 4 * d + (4 * d * d + 4 * d) + (4 * d * d + d)


def croco_decoder_block(d: int) -> int:  # self-attn + cross-attn (q,k,v,proj) + 4 LayerNorms + MLP
    return (4 * d * d + 4 * d) + 4 * (d * d + d) + 8 * d + (8 * d * d + 5 * d)


def test_base_preset_matches_paper_sizes() -> None:
    with torch.device("meta"):
        model = build_model("croco_v1", "base")
    enc, dec, p = 768, 512, 16
    encoder = (3 * p * p * enc + enc) + 12 * vit_block(enc) + 2 * enc
    decoder = (enc * dec + dec) + dec + 8 * croco_decoder_block(dec) + 2 * dec + (dec * p * p * 3 + p * p * 3)
    assert abs(encoder - 85.8e6) / 85.8e6 < 0.01  # ViT-B/16 without class token/head
    assert abs(n_params(model) - (encoder + decoder)) / (encoder + decoder) < 0.01
    enc_model = sum(v.numel() for k, v in model.named_parameters() if k.startswith(("patch_embed", "enc_")))
    assert abs(enc_model - encoder) / encoder < 0.01


def test_preset_sizes_are_ordered_and_large_is_vit_l() -> None:
    with torch.device("meta"):
        sizes = {p: n_params(build_model("croco_v2", p)) for p in ("test", "tiny", "small", "base", "large")}
        large = build_model("croco_v2", "large")
    assert sizes["test"] < 50_000
    assert sizes["test"] < sizes["tiny"] < sizes["small"] < sizes["base"] < sizes["large"]
    enc_l = sum(v.numel() for k, v in large.named_parameters() if k.startswith(("patch_embed", "enc_")))
    assert abs(enc_l - 303.3e6) / 303.3e6 < 0.01  # ViT-L/16 encoder
    assert len(large.dec_blocks) == 12 and large.dec_blocks[0].norm1.weight.shape[0] == 768


@pytest.mark.parametrize("n,ratio", [(196, 0.9), (64, 0.9), (64, 0.75), (10, 0.5)])
def test_masking_exact_count(n: int, ratio: float) -> None:
    mask = random_mask(16, n, ratio, torch.device("cpu"))
    assert mask.shape == (16, n)
    assert (mask.sum(1) == round(ratio * n)).all()
    assert len({tuple(m.tolist()) for m in mask}) > 1  # not the same mask for everyone


def test_model_masks_exact_fraction_and_masks_are_uniform() -> None:
    torch.manual_seed(0)
    model = build_model("croco_v1", "test")
    x = torch.randn(64, 3, 32, 32)
    out = model(x, x)
    n = model.patch_embed.num_patches
    assert (out.mask.sum(1) == round(0.9 * n)).all()
    freq = out.mask.float().mean(0)  # each position masked ~90% of the time
    assert freq.min() > 0.7 and freq.max() <= 1.0


def test_loss_ignores_unmasked_target_pixels() -> None:
    torch.manual_seed(0)
    img = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 64, 0.9, torch.device("cpu"))
    pred = torch.randn(2, 64, 4 * 4 * 3)
    base, _ = normalised_patch_mse(pred, img, mask, 4)
    patches = patchify(img, 4)
    changed_visible = unpatchify(torch.where(mask[..., None], patches, torch.randn_like(patches)), 4)
    changed_masked = unpatchify(torch.where(mask[..., None], torch.randn_like(patches), patches), 4)
    assert torch.allclose(normalised_patch_mse(pred, changed_visible, mask, 4)[0], base)
    assert not torch.allclose(normalised_patch_mse(pred, changed_masked, mask, 4)[0], base)


def test_rope_scores_depend_only_on_relative_position() -> None:
    torch.manual_seed(0)
    rope = RoPE2D(100.0)
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 2, 1, 16)

    def score(p: tuple[int, int], p2: tuple[int, int]) -> torch.Tensor:
        rq = rope(q, torch.tensor([[p]]))
        rk = rope(k, torch.tensor([[p2]]))
        return (rq * rk).sum(-1)

    ref = score((3, 5), (1, 2))
    for shift in [(0, 0), (4, -2), (-3, 7), (10, 10)]:
        s = score((3 + shift[0], 5 + shift[1]), (1 + shift[0], 2 + shift[1]))
        assert torch.allclose(s, ref, atol=1e-5)
    assert not torch.allclose(score((3, 5), (2, 2)), ref, atol=1e-3)  # other offset, other score
    assert not torch.allclose(score((3, 5), (1, 3)), ref, atol=1e-3)


def test_official_key_layout() -> None:
    with torch.device("meta"):
        sd = build_model("croco_v1", "base").state_dict()
        sd2 = build_model("croco_v2", "base").state_dict()
    expected = {
        "patch_embed.proj.weight": (768, 3, 16, 16),
        "enc_pos_embed": (196, 768),
        "dec_pos_embed": (196, 512),
        "enc_blocks.11.attn.qkv.weight": (2304, 768),
        "enc_blocks.0.mlp.fc2.weight": (768, 3072),
        "enc_norm.weight": (768,),
        "mask_token": (1, 1, 512),
        "decoder_embed.weight": (512, 768),
        "dec_blocks.7.cross_attn.projq.weight": (512, 512),
        "dec_blocks.7.cross_attn.projv.bias": (512,),
        "dec_blocks.0.norm_y.weight": (512,),
        "dec_blocks.0.norm3.bias": (512,),
        "dec_norm.weight": (512,),
        "prediction_head.weight": (768, 512),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "enc_pos_embed" not in sd2 and set(sd2) == set(sd) - {"enc_pos_embed", "dec_pos_embed"}


def test_official_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    v1 = build_model("croco_v1", "test")
    v2 = build_model("croco_v2", "test")
    torch.save({"model": v1.state_dict(), "args": argparse.Namespace(enc_num_heads=2, dec_num_heads=2, lr=1e-4)},
               tmp_path / "v1.pth")
    torch.save({"model": v2.state_dict(), "croco_kwargs": {"pos_embed": "RoPE100", "img_size": (32, 32),
                "enc_num_heads": 2, "dec_num_heads": 2}}, tmp_path / "v2.pth")
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    for original, name, pos in ((v1, "v1.pth", "cosine"), (v2, "v2.pth", "rope")):
        loaded, report = load_croco_checkpoint(tmp_path / name)
        assert report.ok and loaded.pos_embed == pos and loaded.spec == original.spec
        for k, v in original.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
        torch.manual_seed(1)
        a = original(x1, x2).loss
        torch.manual_seed(1)
        assert torch.allclose(loaded(x1, x2).loss, a)

    sd = v1.state_dict()
    del sd["dec_norm.weight"]
    sd["extra_head.weight"] = torch.zeros(3)
    torch.save({"model": sd, "args": argparse.Namespace(enc_num_heads=2, dec_num_heads=2)}, tmp_path / "odd.pth")
    _, report = load_croco_checkpoint(tmp_path / "odd.pth")
    assert report.missing == ["dec_norm.weight"] and report.unexpected == ["extra_head.weight"]


def test_corrupt_and_missing_checkpoints_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"model": build_model("croco_v1", "test").state_dict()}, bad)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError, match="bad.pth.*corrupt"):
        load_croco_checkpoint(bad)
    with pytest.raises(ValueError, match="not a crocopipe checkpoint"):
        torch.save({"model": {}}, tmp_path / "plain.pth")
        load_backbone(tmp_path / "plain.pth")


def test_feature_api_shapes_and_mae() -> None:
    torch.manual_seed(0)
    model = build_model("croco_v2", "test").eval()
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f1, p1, blocks = model.encode(x1)
        f2, p2, _ = model.encode(x2)
        dec = model.decode(f1, p1, f2, p2)
    assert f1.shape == (2, 64, 16) and p1.shape == (2, 64, 2) and len(blocks) == 2
    assert torch.equal(blocks[-1], f1) and len(dec) == 1 and dec[-1].shape == (2, 64, 16)
    with torch.no_grad():  # RoPE runs at another resolution; sin-cos positions refuse it
        tokens, pos, _ = model.encode(torch.randn(1, 3, 48, 32))
    assert tokens.shape == (1, 96, 16) and pos[0, -1].tolist() == [11, 7]
    with pytest.raises(ValueError, match="fixed to 32x32"):
        build_model("croco_v1", "test").encode(torch.randn(1, 3, 48, 32))
    mae = build_model("mae", "test")
    assert isinstance(mae, MAENet) and isinstance(model, CroCoNet)
    out = mae(x1)
    assert (out.mask.sum(1) == round(0.75 * 64)).all() and torch.isfinite(out.loss)
    assert not any("cross_attn" in k for k in mae.state_dict())


def test_naive_attention_matches_fused() -> None:
    torch.manual_seed(0)
    model = build_model("croco_v2", "test").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model.encode(x)[0]
        model.set_naive_attention(True)
        naive = model.encode(x)[0]
    assert torch.allclose(fused, naive, atol=1e-5)

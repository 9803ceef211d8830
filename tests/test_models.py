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
from training.models.croco import masked_count, normalised_patch_mse, random_mask
from training.models.loading import CheckpointError, parse_constructor
from training.models.presets import ModelSpec
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


@pytest.mark.parametrize("n,ratio,masked", [(196, 0.9, 176), (64, 0.9, 57), (144, 0.9, 129), (784, 0.9, 705),
                                             (64, 0.75, 48), (10, 0.5, 5), (10, 0.75, 7)])
def test_masking_exact_count(n: int, ratio: float, masked: int) -> None:
    """floor(ratio x N) as the reference computes it (round would give 58 of 64, 130 of 144, 706 of 784)."""
    mask = random_mask(16, n, ratio, torch.device("cpu"))
    assert mask.shape == (16, n)
    assert masked_count(n, ratio) == masked
    assert (mask.sum(1) == masked).all()
    assert len({tuple(m.tolist()) for m in mask}) > 1  # not the same mask for everyone


@pytest.mark.parametrize("method", ["croco_v1", "croco_v2", "mae"])
@pytest.mark.parametrize("size,masked", [(32, 57), (48, 129), (56, 176), (112, 705)])  # 8x8 .. 28x28 grids
def test_every_method_masks_floor_of_ratio(method: str, size: int, masked: int) -> None:
    model = build_model(method, "test", img_size=size, mask_ratio=0.9)
    assert model.num_masked == masked and model.num_visible == (size // 4) ** 2 - masked
    if size == 32:
        out = model(torch.randn(3, 3, size, size), torch.randn(3, 3, size, size))
        assert (out.mask.sum(1) == masked).all()


def test_mask_with_wrong_count_is_refused_wherever_it_enters() -> None:
    torch.manual_seed(0)
    croco, mae = build_model("croco_v1", "test"), build_model("mae", "test", mask_ratio=0.9)
    x = torch.randn(2, 3, 32, 32)
    good = random_mask(2, 64, 0.9, torch.device("cpu"))
    feat, _, _ = croco.encode(x, good)
    assert feat.shape == (2, 7, 16)
    rounded = good.clone()
    rounded[1, (~good[1]).nonzero()[0, 0]] = True  # 58 masked: round(0.9 x 64), not floor
    with pytest.raises(ValueError, match=r"mask row 1 has 58 masked tokens, expected 57 \(floor\(0.9 x 64\)\)"):
        croco.encode(x, rounded)
    full, pos, _ = croco.encode(x)
    grid = croco.patch_embed.positions(2, x.device)
    with pytest.raises(ValueError, match="row 1 has 58"):
        croco.decode(feat, grid, full, pos, rounded)
    with pytest.raises(ValueError, match="row 1 has 58"):
        mae.decode(feat, rounded)
    with pytest.raises(ValueError, match=r"\(batch, 64\) bool"):
        croco.encode(x, good.float())
    with pytest.raises(ValueError, match=r"\(batch, 64\) bool"):
        croco.encode(x, good[:, :32])


def test_model_masks_exact_fraction_and_masks_are_uniform() -> None:
    torch.manual_seed(0)
    model = build_model("croco_v1", "test")
    x = torch.randn(64, 3, 32, 32)
    out = model(x, x)
    n = model.patch_embed.num_patches
    assert n == 64 and (out.mask.sum(1) == 57).all()
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



def test_missing_or_unexpected_keys_raise_unless_strict_false(tmp_path) -> None:
    sd = build_model("croco_v1", "test").state_dict()
    del sd["dec_norm.weight"]
    sd["extra_head.weight"] = torch.zeros(3)
    torch.save({"model": sd, "args": argparse.Namespace(enc_num_heads=2, dec_num_heads=2)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=r"odd.pth does not match the model: missing keys \['dec_norm.weight'\], "
                                              r"unexpected keys \['extra_head.weight'\]; pass strict=False"):
        load_croco_checkpoint(tmp_path / "odd.pth")
    _, report = load_croco_checkpoint(tmp_path / "odd.pth", strict=False)
    assert report.missing == ["dec_norm.weight"] and report.unexpected == ["extra_head.weight"]
    encoder_only = {k: v for k, v in build_model("croco_v1", "test").state_dict().items() if k.startswith("enc")
                    or k.startswith("patch_embed") or k.startswith("decoder_embed")}
    torch.save({"model": encoder_only, "args": argparse.Namespace(enc_num_heads=2, dec_num_heads=2)}, tmp_path / "enc.pth")
    _, report = load_croco_checkpoint(tmp_path / "enc.pth", strict=False)
    assert not report.unexpected and "dec_norm.weight" in report.missing and "mask_token" in report.missing


def reference_file(tmp_path, model: CroCoNet, model_string: str, name: str = "ref.pth") -> str:
    """A checkpoint as the reference pretrain.py writes it: the weights plus its argparse namespace,
    whose `model` is the constructor string the network was built from."""
    args = argparse.Namespace(model=model_string, lr=1.5e-4, batch_size=64, epochs=800, warmup_epochs=40,
                              max_epoch=400, output_dir="./output/")
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 399, "args": args}, tmp_path / name)
    return tmp_path / name


def test_reference_pretrain_layout_loads_its_declared_architecture(tmp_path) -> None:
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    rope = CroCoNet(ModelSpec(32, 4, 16, 2, 4, 16, 1, 1), "rope")  # head counts no table gives for 16 dims
    path = reference_file(tmp_path, rope, "CroCoNet(img_size=32, patch_size=4, enc_embed_dim=16, enc_depth=2, "
                          "enc_num_heads=4, dec_embed_dim=16, dec_depth=1, dec_num_heads=1, pos_embed='RoPE100')")
    loaded, report = load_croco_checkpoint(path)
    assert report.ok and loaded.pos_embed == "rope" and loaded.spec == rope.spec
    assert loaded.spec.enc_heads == 4 and loaded.spec.dec_heads == 1
    with torch.no_grad():
        want = rope.decode(*rope.encode(x1)[:2], *rope.encode(x2)[:2])[-1]
        got = loaded.decode(*loaded.encode(x1)[:2], *loaded.encode(x2)[:2])[-1]
        other_heads = CroCoNet(ModelSpec(32, 4, 16, 2, 2, 16, 1, 2), "rope")
        other_heads.load_state_dict(rope.state_dict())
        wrong = other_heads.decode(*other_heads.encode(x1)[:2], *other_heads.encode(x2)[:2])[-1]
    assert torch.equal(got, want)
    assert not torch.allclose(wrong, want, atol=1e-3)  # the head count matters though no shape shows it

    # sin-cos positions (the constructor default) at a non-default size and head count
    cosine = CroCoNet(ModelSpec(48, 4, 16, 2, 1, 16, 1, 4), "cosine")
    path = reference_file(tmp_path, cosine, "CroCoNet(img_size=48, patch_size=4, enc_embed_dim=16, enc_depth=2, "
                          "enc_num_heads=1, dec_embed_dim=16, dec_depth=1, dec_num_heads=4, mask_ratio=0.9)", "cos.pth")
    loaded, report = load_croco_checkpoint(path)
    assert report.ok and loaded.pos_embed == "cosine" and loaded.spec == cosine.spec


@pytest.mark.parametrize("model_string,error", [
    ("CroCoNet(img_size=32, patch_size=4, enc_embed_dim=16, enc_depth=3, enc_num_heads=4, dec_embed_dim=16, "
     "dec_depth=1, dec_num_heads=1, pos_embed='RoPE100')", r"disagrees with the tensors: enc_depth=3 \(tensors: 2\)"),
    ("CroCoNet(img_size=32, patch_size=4, enc_embed_dim=16, enc_depth=2, enc_num_heads=4, dec_embed_dim=16, "
     "dec_depth=1, dec_num_heads=1)", "declared architecture disagrees with the tensors: pos_embed='cosine'"),
    ("CroCoNet(patch_size=4, enc_embed_dim=16, enc_depth=2, enc_num_heads=4, dec_embed_dim=16, "
     "dec_depth=1, dec_num_heads=1, pos_embed='RoPE100')", None),  # img_size 224 is legal for RoPE weights
    ("CroCoNet(patch_size=4, enc_depth=2, enc_num_heads=4, dec_embed_dim=16, dec_depth=1, dec_num_heads=1, "
     "pos_embed='RoPE100')", r"enc_embed_dim=768 \(tensors: 16\)"),  # the constructor default applies
    ("CroCoNet(img_size=32, patch_size=4, enc_embed_dim=16, enc_depth=2, enc_num_heads=3, dec_embed_dim=16, "
     "dec_depth=1, dec_num_heads=1, pos_embed='RoPE100')", "enc_num_heads=3 does not divide enc_embed_dim=16"),
    ("CroCoNet(img_size=32, patch_size=4, enc_embed_dim=16, enc_depth=2, enc_num_heads=4, dec_embed_dim=16, "
     "dec_depth=1, dec_num_heads=1, pos_embed='RoPE10')", "only RoPE base 100"),
    ("CroCoNet(enc_embed_dim=16, enc_depth=2, norm_layer=partial(nn.LayerNorm, eps=1e-6))",
     "argument norm_layer is not a literal"),
    ("CroCoNet(enc_embed_dim=16, depth_scale=2)", r"constructor arguments \['depth_scale'\] are not understood"),
    ("__import__('os').system('true')", "is not a CroCoNet\\(...\\) call"),
    ("CroCoNet(**{'enc_depth': 2})", "unpacks"),
    ("CroCoNet(16)", "positional arguments"),
    ("CroCoNet(enc_depth=2", "not a constructor call"),
])
def test_reference_layout_that_disagrees_or_is_not_a_literal_call_is_refused(tmp_path, model_string, error) -> None:
    model = CroCoNet(ModelSpec(32, 4, 16, 2, 4, 16, 1, 1), "rope")
    path = reference_file(tmp_path, model, model_string)
    if error is None:
        loaded, _ = load_croco_checkpoint(path)
        assert loaded.spec.img_size == 224 and loaded.spec.enc_heads == 4
        return
    with pytest.raises(CheckpointError, match=error) as info:
        load_croco_checkpoint(path)
    assert "ref.pth" in str(info.value)


def test_constructor_parser_reads_literals_only() -> None:
    assert parse_constructor("CroCoNet()") == {}
    assert parse_constructor(" CroCoNet(img_size=(224, 224), mlp_ratio=4.0, pos_embed='RoPE100') ") == {
        "img_size": (224, 224), "mlp_ratio": 4.0, "pos_embed": "RoPE100"}
    with pytest.raises(CheckpointError, match="not a literal"):
        parse_constructor("CroCoNet(enc_depth=open('x'))")


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


def test_init_matches_the_reference() -> None:
    """Linears xavier with zero bias; the patch embedding's conv bias keeps PyTorch's default
    uniform(+-1/sqrt(fan_in)) init; the mask token is N(0, 0.02)."""
    torch.manual_seed(0)
    model = build_model("croco_v1", "tiny")
    bias = model.patch_embed.proj.bias
    bound = (3 * 8 * 8) ** -0.5
    assert bias.abs().max() <= bound and bias.abs().max() > 0.5 * bound and bias.std() > 0.3 * bound
    assert torch.count_nonzero(model.enc_blocks[0].attn.qkv.bias) == 0
    assert 0.015 < float(model.mask_token.detach().std()) < 0.025


def rotate_reference(x: torch.Tensor, pos: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """2-D RoPE written out per axis: channels [0, d/2) rotate with the row, [d/2, d) with the
    column; within each half, channel i pairs with i + d/4 at frequency base^(-2i/(d/2))."""
    d = x.shape[-1]
    out = []
    for axis, t in enumerate((x[..., : d // 2], x[..., d // 2 :])):
        h = t.shape[-1]
        freq = base ** (-torch.arange(0, h, 2, dtype=torch.float64) / h)
        angle = pos[:, None, :, axis, None].double() * freq
        a, b = t[..., : h // 2].double(), t[..., h // 2 :].double()
        out += [a * angle.cos() - b * angle.sin(), b * angle.cos() + a * angle.sin()]
    return torch.cat(out, dim=-1).float()


def test_rope_table_and_fused_attention_match_their_definition() -> None:
    """The cached-table RoPE and the one-matmul k/v projection compute the textbook formulas."""
    from training.models.layers import CrossAttention

    torch.manual_seed(0)
    rope = RoPE2D(100.0)
    x = torch.randn(3, 2, 10, 16)
    pos = torch.randint(0, 14, (3, 10, 2))
    assert torch.allclose(rope(x, pos), rotate_reference(x, pos), atol=1e-5)
    grid = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(5), indexing="ij"), -1).reshape(1, 10, 2)
    shared = rope.table(grid.expand(3, -1, -1), 16)  # a batch-expanded grid: one row for the batch
    assert shared.cos.shape == (1, 1, 10, 16)
    assert torch.allclose(shared.apply(x), rotate_reference(x, grid.expand(3, -1, -1)), atol=1e-5)

    attn = CrossAttention(16, 2)
    q_in, mem = torch.randn(3, 10, 16), torch.randn(3, 7, 16)
    pos_mem = torch.randint(0, 14, (3, 7, 2))
    with torch.no_grad():
        got = attn(q_in, mem, rope.table(pos, 8), rope.table(pos_mem, 8))

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(3, -1, 2, 8).transpose(1, 2)

        q = rotate_reference(heads(attn.projq(q_in)), pos)
        k = rotate_reference(heads(attn.projk(mem)), pos_mem)
        weights = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
        want = attn.proj((weights @ heads(attn.projv(mem))).transpose(1, 2).reshape(3, 10, 16))
    assert torch.allclose(got, want, atol=1e-5)


def test_naive_attention_matches_fused() -> None:
    torch.manual_seed(0)
    model = build_model("croco_v2", "test").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model.encode(x)[0]
        model.set_naive_attention(True)
        naive = model.encode(x)[0]
    assert torch.allclose(fused, naive, atol=1e-5)


def test_mfu_is_achieved_model_flops_over_the_peak() -> None:
    from training.flops import TRAIN_FACTOR, mfu, pretrain_forward_flops

    from training.models.presets import preset_spec

    spec = preset_spec("base")
    per_pair = TRAIN_FACTOR * pretrain_forward_flops("croco_v2", spec, 0.9)
    assert mfu(100.0, per_pair, 989e12) == pytest.approx(100.0 * per_pair / 989e12)
    assert mfu(10.0, 1e12, 1e15) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="peak FLOP/s must be positive"):
        mfu(1.0, 1.0, 0.0)


def test_rope_hand_written_backward_is_the_gradient() -> None:
    """RopeTable.apply's backward (g cos - swap(g) sin) against numerical differentiation."""
    torch.manual_seed(0)
    pos = torch.randint(0, 14, (2, 5, 2))
    table = RoPE2D(100.0).table(pos, 8)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(table.apply, (x,))
    grid = RoPE2D(100.0).table(torch.zeros(1, 5, 2, dtype=torch.long).expand(2, -1, -1) + 3, 8)  # shared table
    assert torch.autograd.gradcheck(grid.apply, (x,))


@pytest.mark.parametrize("method", ["croco_v1", "croco_v2"])
def test_two_view_encoder_pass_equals_two_encodes(method: str) -> None:
    """The training forward encodes both views in one pass (shared rows, attention per view):
    the same tokens and the same gradients as encoding each view on its own."""
    torch.manual_seed(0)
    model = build_model(method, "test")
    x1, x2 = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    visible = model._visible(random_mask(3, 64, 0.9, torch.device("cpu")))
    weights = [torch.randn(3, 7, 16), torch.randn(3, 64, 16)]

    def grads(feats: list[torch.Tensor]) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        sum((f * w).sum() for f, w in zip(feats, weights)).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    f1, f2, pos2 = model._encode_pair(x1, visible, x2)
    one = grads([f1, f2])
    g1, _, _ = model._encode(x1, visible)
    g2, pos, _ = model._encode(x2)
    two = grads([g1, g2])
    assert f1.shape == (3, 7, 16) and f2.shape == (3, 64, 16) and torch.equal(pos2, pos)
    assert torch.allclose(f1, g1, atol=1e-6) and torch.allclose(f2, g2, atol=1e-6)
    assert len(one) == len(two) and all(float((a - b).norm()) <= 1e-5 * float(b.norm()) for a, b in zip(one, two))
    with torch.no_grad():  # no attention across views: another view 2 leaves view 1's tokens as they were
        other1, other2, _ = model._encode_pair(x1, visible, torch.randn(3, 3, 32, 32))
    assert torch.allclose(other1, f1, atol=1e-6) and not torch.allclose(other2, f2, atol=1e-3)

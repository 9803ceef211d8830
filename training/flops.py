"""Matrix-multiply FLOPs of the models, counted from the architecture (no torch needed).

Counted: every linear layer, the patch-embedding convolution and the two attention products
(q k^T and attention x v), at 2 FLOPs per multiply-add; norms, softmax, GELU, RoPE and the loss
are left out (a few percent). A training step costs 3x the forward pass (backward ~ 2x forward).
``tests/test_plan.py`` checks these counts against torch's own FLOP counter on real models.
"""

from __future__ import annotations

from training.models.presets import ModelSpec

TRAIN_FACTOR = 3  # forward + backward


def _linear(tokens: int, d_in: int, d_out: int) -> int:
    return 2 * tokens * d_in * d_out


def _self_attention(n: int, d: int) -> int:
    return _linear(n, d, 3 * d) + _linear(n, d, d) + 2 * 2 * n * n * d


def _cross_attention(n: int, m: int, d: int) -> int:
    return _linear(n, d, d) + 2 * _linear(m, d, d) + _linear(n, d, d) + 2 * 2 * n * m * d


def _mlp(n: int, d: int, ratio: float) -> int:
    return 2 * _linear(n, d, int(d * ratio))


def encoder_flops(spec: ModelSpec, tokens: int) -> int:
    """Patch embedding of the whole image plus ``tokens`` tokens through every encoder block."""
    patches = (spec.img_size // spec.patch_size) ** 2
    embed = _linear(patches, 3 * spec.patch_size**2, spec.enc_dim)
    block = _self_attention(tokens, spec.enc_dim) + _mlp(tokens, spec.enc_dim, spec.mlp_ratio)
    return embed + spec.enc_depth * block


def croco_decoder_flops(spec: ModelSpec, n1: int, n2: int, visible1: int) -> int:
    """decoder_embed of view 1's visible tokens and of view 2's, ``dec_depth`` blocks of
    self-attention (n1) + cross-attention (n1 -> n2) + MLP, and the pixel head on n1 tokens."""
    d = spec.dec_dim
    embed = _linear(visible1, spec.enc_dim, d) + _linear(n2, spec.enc_dim, d)
    block = _self_attention(n1, d) + _cross_attention(n1, n2, d) + _mlp(n1, d, spec.mlp_ratio)
    return embed + spec.dec_depth * block + _linear(n1, d, 3 * spec.patch_size**2)


def mae_decoder_flops(spec: ModelSpec, n: int, visible: int) -> int:
    d = spec.dec_dim
    block = _self_attention(n, d) + _mlp(n, d, spec.mlp_ratio)
    return _linear(visible, spec.enc_dim, d) + spec.dec_depth * block + _linear(n, d, 3 * spec.patch_size**2)


def pretrain_forward_flops(method: str, spec: ModelSpec, mask_ratio: float) -> int:
    """FLOPs of one pretraining forward pass on one pair (one image for MAE)."""
    n = (spec.img_size // spec.patch_size) ** 2
    visible = n - int(mask_ratio * n)  # floor, as the models mask (training.models.croco.masked_count)
    from training.methods import PRETRAINED_METHODS, get_method

    pretrains_on = get_method(method).pretrains_on
    if pretrains_on == "pairs":  # cross-view completion: view 1 masked, view 2 whole, cross-view decoder
        return encoder_flops(spec, visible) + encoder_flops(spec, n) + croco_decoder_flops(spec, n, n, visible)
    if pretrains_on == "images":  # single-view masked autoencoding
        return encoder_flops(spec, visible) + mae_decoder_flops(spec, n, visible)
    raise ValueError(f"method {method!r} is not pretrained; pretrained methods: {', '.join(PRETRAINED_METHODS)}")


def binocular_forward_flops(spec: ModelSpec) -> int:
    """Both views encoded unmasked and view 1 decoded against view 2 (flow, pose, correspondence
    heads' backbone), without the pixel head."""
    n = (spec.img_size // spec.patch_size) ** 2
    full = croco_decoder_flops(spec, n, n, n) - _linear(n, spec.dec_dim, 3 * spec.patch_size**2)
    return 2 * encoder_flops(spec, n) + full


def monocular_forward_flops(spec: ModelSpec) -> int:
    n = (spec.img_size // spec.patch_size) ** 2
    return encoder_flops(spec, n)


def mfu(pairs_per_s: float, flops_per_pair: float, peak_flops: float) -> float:
    """Model FLOP utilisation: achieved model FLOP/s (pairs/s x training FLOPs per pair) over the
    hardware's stated peak FLOP/s."""
    if peak_flops <= 0:
        raise ValueError(f"peak FLOP/s must be positive, got {peak_flops}")
    return pairs_per_s * flops_per_pair / peak_flops

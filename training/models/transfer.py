"""Moving pretrained weights into another network, for downstream tasks that need parts a
method's own network lacks."""

from __future__ import annotations

from collections.abc import Callable

from training.models.croco import CroCoNet, MaskedViT

ENCODER_PREFIXES = ("patch_embed.", "enc_blocks.", "enc_norm.", "enc_pos_embed")


def encoder_in_croco(backbone: MaskedViT, build_croco: Callable) -> tuple[CroCoNet, set[str]]:
    """A CroCo network of the same size (``build_croco(spec, None)``) holding ``backbone``'s encoder
    weights, with a freshly initialised cross-view decoder (the CroCo paper's "MAE encoder"
    baseline); returns it and the names of the parameters that came pretrained."""
    net = build_croco(backbone.spec, None)
    state = {k: v for k, v in backbone.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    missing = [k for k in state if k not in net.state_dict()]
    if missing:
        raise ValueError(f"encoder weights {missing[:3]} have no place in the CroCo network")
    net.load_state_dict(state, strict=False)
    return net, {n for n, _ in net.named_parameters() if n.startswith(ENCODER_PREFIXES)}

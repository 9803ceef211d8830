"""Load weights: official CroCo checkpoints and this project's own training checkpoints.

Official files are {'model': state_dict, 'args': argparse.Namespace} (v1) or
{'model': state_dict, 'croco_kwargs': dict} (v2). They are read with weights_only=True
(argparse.Namespace allow-listed) and the architecture is inferred from the tensor shapes.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.models.croco import CroCoNet, MaskedViT
from training.models.presets import ModelSpec

log = logging.getLogger(__name__)

# Heads are not recoverable from shapes; these are the official models' (dim -> heads).
_ENC_HEADS = {384: 6, 768: 12, 1024: 16}
_DEC_HEADS = {384: 12, 512: 16, 768: 12}


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True and a clear error for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, disallowed globals
        raise ValueError(f"checkpoint {path} is unreadable or corrupt: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or "model" not in obj:
        raise ValueError(f"checkpoint {path} holds no 'model' state dict")
    return obj


def _count_blocks(state: dict, prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _kwargs(ckpt: dict) -> dict:
    if isinstance(ckpt.get("croco_kwargs"), dict):
        return dict(ckpt["croco_kwargs"])
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    return {}


def infer_croco(state: dict, kwargs: dict) -> tuple[ModelSpec, str]:
    """ModelSpec and positional-embedding kind of an official CroCo state dict."""
    try:
        w = state["patch_embed.proj.weight"]
        dec_w = state["decoder_embed.weight"]
    except KeyError as exc:
        raise ValueError(f"not a CroCo state dict: missing {exc.args[0]}") from exc
    enc_dim, patch = int(w.shape[0]), int(w.shape[-1])
    dec_dim = int(dec_w.shape[0])
    pos = str(kwargs.get("pos_embed", "cosine" if "enc_pos_embed" in state else "RoPE100"))
    if pos.startswith("RoPE") and float(pos[4:] or 100) != 100.0:
        raise ValueError(f"only RoPE base 100 is supported, checkpoint uses {pos}")
    if "enc_pos_embed" in state:
        img_size = int(round(state["enc_pos_embed"].shape[0] ** 0.5)) * patch
    else:
        size = kwargs.get("img_size", 224)
        img_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    enc_heads = int(kwargs.get("enc_num_heads", _ENC_HEADS.get(enc_dim, 0)))
    dec_heads = int(kwargs.get("dec_num_heads", _DEC_HEADS.get(dec_dim, 0)))
    if not enc_heads or not dec_heads:
        raise ValueError(f"cannot infer head counts for enc_dim={enc_dim}, dec_dim={dec_dim}; no kwargs in file")
    spec = ModelSpec(
        img_size=img_size,
        patch_size=patch,
        enc_dim=enc_dim,
        enc_depth=_count_blocks(state, "enc_blocks"),
        enc_heads=enc_heads,
        dec_dim=dec_dim,
        dec_depth=_count_blocks(state, "dec_blocks"),
        dec_heads=dec_heads,
        mlp_ratio=float(kwargs.get("mlp_ratio", 4.0)),
    )
    return spec, ("cosine" if pos == "cosine" else "rope")


def load_state(model: MaskedViT, state: dict) -> LoadReport:
    """Non-strict load that reports missing/unexpected keys (and shape mismatches as both)."""
    own = model.state_dict()
    usable, report = {}, LoadReport()
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.unexpected.append(f"{k} (shape {tuple(v.shape)} != {tuple(own[k].shape)})")
        else:
            usable[k] = v
    report.missing = sorted(k for k in own if k not in usable)
    model.load_state_dict(usable, strict=False)
    for k in report.missing:
        log.warning("weights: missing key %s (left at initialisation)", k)
    for k in report.unexpected:
        log.warning("weights: unexpected key %s (ignored)", k)
    return report


def load_croco_checkpoint(path: str | Path, mask_ratio: float = 0.9) -> tuple[CroCoNet, LoadReport]:
    """Build a CroCoNet matching an official CroCo v1/v2 file and load its weights."""
    ckpt = read_checkpoint(path)
    state = ckpt["model"]
    spec, pos = infer_croco(state, _kwargs(ckpt))
    model = CroCoNet(spec, pos_embed=pos, mask_ratio=mask_ratio)
    return model, load_state(model, state)

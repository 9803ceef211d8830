"""CroCo v1/v2 and MAE models, presets, and weight loading.

Feature API used by downstream heads (no masking):
    tokens, pos, blocks = model.encode(img)                 # img normalised with IMAGENET_MEAN/STD
    dec_blocks = model.decode(tokens1, pos1, tokens2, pos2)  # CroCo only: view 1 attending to view 2
"""

from __future__ import annotations

from pathlib import Path

from training.models.croco import IMAGENET_MEAN, IMAGENET_STD, CroCoNet, MAENet, MaskedViT, PretrainOutput
from training.models.loading import (
    CheckpointError,
    LoadReport,
    load_croco_checkpoint,
    load_state,
    parse_constructor,
    read_checkpoint,
)
from training.models.presets import PRESETS, ModelSpec, preset_spec

from training.methods import ALL_METHODS as METHODS, get_method


def build_from_spec(method: str, spec: ModelSpec, mask_ratio: float | None = None) -> MaskedViT:
    """The network of a registered method (training.methods); `none` is an untrained CroCo v1."""
    return get_method(method).build(spec, mask_ratio)


def build_model(method: str, preset: str, img_size: int | None = None, mask_ratio: float | None = None) -> MaskedViT:
    return build_from_spec(method, preset_spec(preset, img_size), mask_ratio)


def load_backbone(checkpoint_path: str | Path) -> tuple[MaskedViT, dict]:
    """Model + config from one of this project's pretraining checkpoints (or its final weights).

    Returns the model in eval mode on CPU and a dict with 'method', 'spec', 'mask_ratio', 'step'
    and the pretraining 'config'.
    """
    ckpt = read_checkpoint(checkpoint_path)
    meta = ckpt.get("model_args")
    if not isinstance(meta, dict):
        raise ValueError(f"{checkpoint_path} is not a crocopipe checkpoint (no 'model_args'); "
                         "use load_croco_checkpoint for official CroCo files")
    model = build_from_spec(meta["method"], ModelSpec(**meta["spec"]), meta["mask_ratio"])
    load_state(model, ckpt["model"], strict=True, source=str(checkpoint_path))
    model.eval()
    info = dict(meta)
    info["step"] = int(ckpt.get("step", 0))
    info["config"] = ckpt.get("config", {})
    return model, info


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "METHODS", "PRESETS", "CheckpointError", "CroCoNet", "LoadReport", "MAENet",
    "MaskedViT", "ModelSpec", "PretrainOutput", "build_from_spec", "build_model", "load_backbone", "load_croco_checkpoint",
    "load_state", "parse_constructor", "preset_spec", "read_checkpoint",
]

"""Model sizes. `base` is the CroCo v1 paper model (and CroCo v2's ViT-B/Small-decoder),
`base_basedec` CroCo v2's ViT-B/Base-decoder, `large` its ViT-L/Base-decoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelSpec:
    img_size: int
    patch_size: int
    enc_dim: int
    enc_depth: int
    enc_heads: int
    dec_dim: int
    dec_depth: int
    dec_heads: int
    mlp_ratio: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelSpec] = {
    # a few thousand parameters, for tests only
    "test": ModelSpec(32, 4, 16, 2, 2, 16, 1, 2),
    # laptop CPU: 112 px crops, patch 8 -> the paper's 14x14 token grid
    "tiny": ModelSpec(112, 8, 192, 6, 3, 128, 2, 4),
    "small": ModelSpec(224, 16, 384, 12, 6, 256, 4, 8),
    "base": ModelSpec(224, 16, 768, 12, 12, 512, 8, 16),
    "large": ModelSpec(224, 16, 1024, 24, 16, 768, 12, 12),
    # CroCo v2's ViT-B encoder with its "Base" decoder (768/12/12); `base` is ViT-B/Small (512/8/16)
    "base_basedec": ModelSpec(224, 16, 768, 12, 12, 768, 12, 12),
}


def preset_spec(preset: str, img_size: int | None = None) -> ModelSpec:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
    spec = PRESETS[preset]
    if img_size is not None and img_size != spec.img_size:
        spec = ModelSpec(**{**spec.to_dict(), "img_size": img_size})
    if spec.img_size % spec.patch_size:
        raise ValueError(f"crop size {spec.img_size} is not a multiple of patch size {spec.patch_size}")
    return spec

"""Load weights: official CroCo checkpoints and this project's own training checkpoints.

Official files come in three layouts:
- {'model': state_dict, 'croco_kwargs': dict} (the released v2 models);
- {'model': state_dict, 'args': argparse.Namespace} where args.model is the constructor string the
  reference pretrain.py built the network from, e.g. "CroCoNet(enc_embed_dim=1024, enc_depth=24,
  enc_num_heads=16, pos_embed='RoPE100')" (its keyword arguments override the defaults below);
- {'model': state_dict, 'args': Namespace} without `model` (the released v1 model): the
  architecture is the constructor defaults, checked against the tensors.
They are read with weights_only=True (argparse.Namespace allow-listed). The declared architecture
is checked against the tensor shapes; a disagreement is refused, never papered over.
"""

from __future__ import annotations

import argparse
import ast
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.models.croco import CroCoNet, MaskedViT
from training.models.presets import ModelSpec

log = logging.getLogger(__name__)

# The reference CroCoNet constructor's defaults for the arguments that shape the network.
REFERENCE_DEFAULTS: dict[str, object] = {
    "img_size": 224, "patch_size": 16, "enc_embed_dim": 768, "enc_depth": 12, "enc_num_heads": 12,
    "dec_embed_dim": 512, "dec_depth": 8, "dec_num_heads": 16, "mlp_ratio": 4, "pos_embed": "cosine",
    "norm_im2_in_dec": True,
}
# Constructor arguments that do not change the network's weights or outputs.
_IGNORED_KWARGS = {"mask_ratio"}
# Heads are not recoverable from shapes; for a file that declares nothing, the official models'.
_ENC_HEADS = {384: 6, 768: 12, 1024: 16}
_DEC_HEADS = {384: 12, 512: 16, 768: 12}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as it claims to be (the message names file and key)."""


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def describe(self) -> str:
        return f"missing keys {self.missing}, unexpected keys {self.unexpected}"


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True and a clear error for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, disallowed globals
        raise UnreadableCheckpointError(f"checkpoint {path} is unreadable: {checkpoint_problem(exc, path)}") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise UnreadableCheckpointError(f"checkpoint {path} holds no 'model' state dict")
    return obj


class UnreadableCheckpointError(ValueError):
    """A checkpoint file that cannot be loaded as weights; the message is one line."""


def checkpoint_problem(exc: BaseException, path: Path | None = None) -> str:
    """What is wrong with a file torch.load refused, in one line and without torch's advice to
    load it with weights_only=False or to allow its globals (that would run code the file holds)."""
    head = b""
    if path is not None:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError:
            pass
    if path is not None and not head:
        return "the file is empty (0 bytes)"
    if head and not head.startswith((b"PK", b"\x80")):  # zip archive, or the legacy pickle format
        return f"not a PyTorch checkpoint (it starts with {head!r})"
    text = str(exc)
    if "central directory" in text or "zip archive" in text or "not a zip" in text.lower():
        return "not a complete PyTorch checkpoint (truncated or corrupt zip archive); re-copy or re-create it"
    if "Weights only load failed" in text or "UnpicklingError" in type(exc).__name__:
        detail = next((line.split(":", 1)[1].split(". Please use")[0].strip() for line in text.splitlines()
                       if "WeightsUnpickler error" in line), "")
        detail = detail or "it holds objects other than tensors and plain containers"
        return f"refused as weights ({detail.rstrip('.')}); only weight files are loaded"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:300]


def parse_constructor(text: str, name: str = "CroCoNet") -> dict[str, object]:
    """Keyword arguments of a constructor string such as "CroCoNet(enc_depth=24, pos_embed='RoPE100')".

    Only `name(key=literal, ...)` is accepted (literals as ast.literal_eval reads them); nothing
    is evaluated, so a string that calls or names anything else is refused.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise CheckpointError(f"model string {text!r} is not a constructor call: {exc.msg}") from exc
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.func.id != name:
        raise CheckpointError(f"model string {text!r} is not a {name}(...) call")
    if call.args:
        raise CheckpointError(f"model string {text!r} has positional arguments; only key=value is understood")
    kwargs: dict[str, object] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise CheckpointError(f"model string {text!r} unpacks **arguments; only key=value is understood")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError as exc:
            raise CheckpointError(f"model string {text!r}: argument {kw.arg} is not a literal "
                                  f"({ast.unparse(kw.value)})") from exc
    return kwargs


def declared_kwargs(ckpt: dict) -> dict[str, object]:
    """The architecture a file declares: constructor keyword arguments, possibly none.

    A pretrain.py constructor string is a complete call, so the reference constructor's defaults
    fill what it omits; the other layouts declare only the keys they hold (the rest is read from
    the tensors).
    """
    if isinstance(ckpt.get("croco_kwargs"), dict):
        return dict(ckpt["croco_kwargs"])
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        values = vars(args)
        if isinstance(values.get("model"), str):
            return {**REFERENCE_DEFAULTS, **parse_constructor(values["model"])}
        return {k: v for k, v in values.items() if k in REFERENCE_DEFAULTS}
    return {}


def _count_blocks(state: dict, prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _side(value: object, key: str) -> int:
    """img_size / patch_size may be an int or an (h, w) pair; only square ones are supported."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"{key}={value!r}: only square sizes are supported")
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckpointError(f"{key}={value!r} is not an integer size")
    return value


def _pos_kind(value: object) -> str:
    if value == "cosine":
        return "cosine"
    if isinstance(value, str) and value.startswith("RoPE"):
        base = value[4:]
        if base not in ("", "100", "100.0"):
            raise CheckpointError(f"pos_embed={value!r}: only RoPE base 100 is supported")
        return "rope"
    raise CheckpointError(f"pos_embed={value!r} is unknown (expected 'cosine' or 'RoPE100')")


def infer_croco(state: dict, kwargs: dict) -> tuple[ModelSpec, str]:
    """ModelSpec and positional-embedding kind of an official CroCo state dict.

    `kwargs` are the declared constructor arguments: every declared size and the declared
    positional embedding must agree with the tensors; what is not declared is read from them
    (head counts, which shapes do not show, from the official models' table).
    """
    try:
        w = state["patch_embed.proj.weight"]
        dec_w = state["decoder_embed.weight"]
    except KeyError as exc:
        raise CheckpointError(f"not a CroCo state dict: missing {exc.args[0]}") from exc
    unknown = sorted(set(kwargs) - set(REFERENCE_DEFAULTS) - _IGNORED_KWARGS)
    if unknown:
        raise CheckpointError(f"constructor arguments {unknown} are not understood; refusing to guess the architecture")
    if kwargs.get("norm_im2_in_dec", True) is not True:
        raise CheckpointError("norm_im2_in_dec=False (no memory LayerNorm in the decoder) is not supported")

    has_pos = "enc_pos_embed" in state
    found: dict[str, object] = {
        "enc_embed_dim": int(w.shape[0]),
        "patch_size": int(w.shape[-1]),
        "dec_embed_dim": int(dec_w.shape[0]),
        "enc_depth": _count_blocks(state, "enc_blocks"),
        "dec_depth": _count_blocks(state, "dec_blocks"),
        "pos_embed": "cosine" if has_pos else "rope",
    }
    fc1 = state.get("enc_blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        found["mlp_ratio"] = fc1.shape[0] / fc1.shape[1]
    if has_pos:
        found["img_size"] = int(round(state["enc_pos_embed"].shape[0] ** 0.5)) * found["patch_size"]

    declared: dict[str, object] = {}
    for key in ("enc_embed_dim", "dec_embed_dim", "enc_depth", "dec_depth", "mlp_ratio"):
        if key in kwargs:
            declared[key] = kwargs[key]
    for key in ("img_size", "patch_size"):
        if key in kwargs:
            declared[key] = _side(kwargs[key], key)
    if "pos_embed" in kwargs:
        declared["pos_embed"] = _pos_kind(kwargs["pos_embed"])
    wrong = [f"{k}={kwargs[k]!r} (tensors: {found[k]!r})" for k, v in declared.items()
             if k in found and (v != found[k] if k == "pos_embed" else float(v) != float(found[k]))]
    if wrong:
        raise CheckpointError(f"declared architecture disagrees with the tensors: {', '.join(wrong)}")
    arch = {**found, **declared}

    heads = {}
    for part, table in (("enc", _ENC_HEADS), ("dec", _DEC_HEADS)):
        dim = arch[f"{part}_embed_dim"]
        n = kwargs.get(f"{part}_num_heads", table.get(dim))
        if n is None:
            raise CheckpointError(f"cannot infer {part}_num_heads for {part}_embed_dim={dim}: the file does not declare it")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or dim % n:
            raise CheckpointError(f"{part}_num_heads={n!r} does not divide {part}_embed_dim={dim}")
        if arch["pos_embed"] == "rope" and (dim // n) % 4:
            raise CheckpointError(f"{part}_num_heads={n}: RoPE needs a head dimension divisible by 4, got {dim // n}")
        heads[part] = n
    spec = ModelSpec(
        img_size=int(arch.get("img_size", REFERENCE_DEFAULTS["img_size"])),
        patch_size=int(arch["patch_size"]),
        enc_dim=int(arch["enc_embed_dim"]),
        enc_depth=int(arch["enc_depth"]),
        enc_heads=heads["enc"],
        dec_dim=int(arch["dec_embed_dim"]),
        dec_depth=int(arch["dec_depth"]),
        dec_heads=heads["dec"],
        mlp_ratio=float(arch.get("mlp_ratio", 4.0)),
    )
    return spec, str(arch["pos_embed"])


def load_state(model: MaskedViT, state: dict, strict: bool = True, source: str = "state dict") -> LoadReport:
    """Load `state` into `model`; shape mismatches count as both unexpected and missing.

    strict (default): any missing or unexpected key raises CheckpointError listing them, and the
    model is left untouched. strict=False loads what matches and logs and reports what was skipped.
    """
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
    if strict and not report.ok:
        raise CheckpointError(f"{source} does not match the model: {report.describe()}; "
                              "pass strict=False to load only the matching weights")
    model.load_state_dict(usable, strict=False)
    for k in report.missing:
        log.warning("weights: missing key %s (left at initialisation)", k)
    for k in report.unexpected:
        log.warning("weights: unexpected key %s (ignored)", k)
    return report


def load_croco_checkpoint(
    path: str | Path, mask_ratio: float = 0.9, strict: bool = True
) -> tuple[CroCoNet, LoadReport]:
    """Build a CroCoNet matching an official CroCo v1/v2 file and load its weights.

    strict=False is for partial loads (e.g. encoder only): the report lists what was skipped.
    """
    ckpt = read_checkpoint(path)
    state = ckpt["model"]
    try:
        spec, pos = infer_croco(state, declared_kwargs(ckpt))
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    model = CroCoNet(spec, pos_embed=pos, mask_ratio=mask_ratio)
    return model, load_state(model, state, strict=strict, source=str(path))

"""The pretraining methods: the one place a method is declared.

An entry says how its network is built, what it pretrains on, which mask-ratio setting it uses,
its paper's warmup, and how a two-view downstream task gets a cross-view decoder from it. Every
list of methods (config validation, the trainer's command line, the CLI, evaluation, the tables)
is read from here. A new method is its model file plus one entry below.

No torch at import: the run config validates method names on machines without it; builders
import the model classes when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from training.models.croco import MaskedViT
    from training.models.presets import ModelSpec

# (network, names of its parameters that came pretrained)
TwoViewAdapter = Callable[["MaskedViT"], tuple["MaskedViT", set[str]]]


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # how tables name it
    pretrains_on: Literal["pairs", "images", "nothing"]  # cross-view pairs, single views, or no pretraining
    build: Callable[["ModelSpec", float | None], "MaskedViT"]  # network from a spec and a mask ratio (None: default)
    mask_ratio_setting: str | None = None  # the [pretrain] field holding its mask ratio
    paper_warmup_share: float | None = None  # warmup as a share of the schedule in its paper
    two_view: TwoViewAdapter | None = None  # None: the network has its own cross-view decoder

    @property
    def pretrained(self) -> bool:
        return self.pretrains_on != "nothing"


def _croco(pos_embed: str) -> Callable[["ModelSpec", float | None], "MaskedViT"]:
    def build(spec: "ModelSpec", mask_ratio: float | None) -> "MaskedViT":
        from training.models.croco import CroCoNet

        return CroCoNet(spec, pos_embed, 0.9 if mask_ratio is None else mask_ratio)

    return build


def _mae(spec: "ModelSpec", mask_ratio: float | None) -> "MaskedViT":
    from training.models.croco import MAENet

    return MAENet(spec, 0.75 if mask_ratio is None else mask_ratio)


def _mae_encoder_in_croco(backbone: "MaskedViT") -> tuple["MaskedViT", set[str]]:
    from training.models.transfer import encoder_in_croco

    return encoder_in_croco(backbone, METHODS["croco_v1"].build)


_ENTRIES = (
    Method("croco_v1", "CroCo v1", "pairs", _croco("cosine"), "mask_ratio_croco", 40 / 800),
    Method("croco_v2", "CroCo v2", "pairs", _croco("rope"), "mask_ratio_croco", 12 / 250),
    # MAE has no cross-view decoder: two-view tasks put its encoder in a fresh CroCo v1 network.
    Method("mae", "MAE", "images", _mae, "mask_ratio_mae", 40 / 800, two_view=_mae_encoder_in_croco),
    # The random-initialisation baseline: an untrained CroCo v1 network.
    Method("none", "none (random init)", "nothing", _croco("cosine")),
)
METHODS: dict[str, Method] = {m.name: m for m in _ENTRIES}
ALL_METHODS: tuple[str, ...] = tuple(METHODS)
PRETRAINED_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.pretrained)


def get_method(name: str) -> Method:
    """The registry entry of ``name``; ValueError naming the allowed methods otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(ALL_METHODS)}") from None


def check_names(values: object, allowed: tuple[str, ...], what: str) -> object:
    """One readable error for unknown or repeated names (lists pass through unchanged otherwise)."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return values  # let pydantic report the type error
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what}s listed twice: {list(values)}")
    if not values:
        raise ValueError(f"at least one {what} is needed; allowed: {', '.join(allowed)}")
    return list(values)

"""What each kind of evaluation task predicts, and how: the one place a kind is defined.

A kind (``depth``, ``flow``, ``pose``) brings the arrays it builds from the corpus's val pairs,
its head on the backbone, the forward pass, its loss, its prediction and its metrics; a zero-shot
kind (``ZERO_SHOT = True``: ``correspondence``, ``cross_view_gain``) trains no head and brings only
its arrays (its measure is in evaluation.zero_shot). Tasks (evaluation.tasks) name a kind and a
data source. A new kind is its module here plus one line below.
"""

from __future__ import annotations

from types import ModuleType

from evaluation.kinds import correspondence, cross_view_gain, depth, flow, pose

KINDS: dict[str, ModuleType] = {
    "depth": depth, "flow": flow, "pose": pose, "correspondence": correspondence, "cross_view_gain": cross_view_gain,
}
HEAD_KINDS: tuple[str, ...] = tuple(name for name, kind in KINDS.items() if not getattr(kind, "ZERO_SHOT", False))


def get_kind(name: str) -> ModuleType:
    """The kind module of ``name``; ValueError naming the allowed kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(KINDS)}") from None


def head_kind(name: str) -> ModuleType:
    """A kind that trains a head; ValueError for an unknown or zero-shot kind."""
    kind = get_kind(name)
    if getattr(kind, "ZERO_SHOT", False):
        raise ValueError(f"task {name!r} trains no head; head tasks: {', '.join(HEAD_KINDS)}")
    return kind

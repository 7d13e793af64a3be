"""Which patch evidence a variant uses, and the variant's identity for hashing.

A zero-shot variant ignores every patch-mode field, a few-shot one ignores the mutual fraction,
a mutual one the reference set: ``normalise`` resets what a mode ignores, so a sweep never
computes the same variant twice and equal variants share a hash.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import PATCH_FIELDS, AggregateConfig, to_jsonable

DEFAULT_NEIGHBOURHOOD = {"few-shot": 1, "mutual": 3}
_IGNORED = {
    "zero-shot": PATCH_FIELDS[1:],
    "few-shot": ("mutual_fraction",),
    "mutual": ("shots", "shot_seed", "reference"),
}


def normalise(agg: AggregateConfig) -> AggregateConfig:
    """``agg`` with the fields its mode ignores at their defaults and its neighbourhood resolved.

    Example:
        >>> mutual = normalise(AggregateConfig(mode="mutual", shots=2))
        >>> mutual.shots, mutual.neighbourhood   # shots reset (mutual ignores them), r resolved
        (4, 3)
    """
    defaults = AggregateConfig()
    changes: dict[str, Any] = {f: getattr(defaults, f) for f in _IGNORED[agg.mode]}
    if agg.mode != "zero-shot" and agg.neighbourhood is None:
        changes["neighbourhood"] = DEFAULT_NEIGHBOURHOOD[agg.mode]
    return dataclasses.replace(agg, **changes)


def hash_view(agg: AggregateConfig) -> dict[str, Any]:
    """What names a variant in its hash: a zero-shot variant leaves the patch fields out (its hash
    is the one it had before they existed)."""
    agg = normalise(agg)
    view = to_jsonable(agg)
    if agg.mode == "zero-shot":
        for f in PATCH_FIELDS:
            view.pop(f)
    return view


def mode_label(agg: AggregateConfig) -> str:
    """The mode part of a variant label: ``""`` for zero-shot.

    Example:
        >>> mode_label(AggregateConfig(mode="few-shot", shots=2))
        '/few-shot2/mean/r1'
    """
    agg = normalise(agg)
    if agg.mode == "zero-shot":
        return ""
    if agg.mode == "few-shot":
        ref = "" if not agg.reference else f"@{agg.reference}"
        head = f"few-shot{agg.shots or 'all'}{ref}" + (f"s{agg.shot_seed}" if agg.shot_seed else "")
    else:
        head = f"mutual{agg.mutual_fraction:g}"
    return f"/{head}/{agg.combine}/r{agg.neighbourhood}"

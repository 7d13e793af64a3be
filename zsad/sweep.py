"""The sweep grammar: ``key=v1,v2;key=v3`` parsed into axes, and axes expanded into variants.

``parse_axes`` reads the text into ``{field: values}`` (each value parsed by the field's type),
``with_shots`` merges ``--shots/--shot-seed/--reference`` into those axes, ``expand`` takes
their product as ``AggregateConfig``s (fields a mode ignores dropped, each distinct variant
once, in the order of the axes) and ``format_axes`` writes axes back as text (what a
deployment's parameter carries).

Example:
    >>> axes = with_shots(parse_axes("mode=zero-shot,few-shot"), shots=2, seed=None)
    >>> format_axes(axes)
    'mode=zero-shot,few-shot;shots=2'
    >>> [v.mode for v in expand(axes)]
    ['zero-shot', 'few-shot']
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from .detectors import DETECTOR, DETECTORS
from .variants import FUSIONS, MODES, PATCH_MODES, AggregateConfig

Axes = dict[str, tuple]

GRID: Axes = {
    "fusion": FUSIONS,
    "top_fraction": (0.25, 0.5, 1.0),
    "scale_by_tile_score": (True, False),
    "seed_states": (True, False),
    "logit_scale": (None, 1 / 0.07),  # CLIP's own (100), WinCLIP's temperature 0.07
}
SCALE_NAMES = {"clip": None, "winclip": 1 / 0.07}
NONE_WORDS = ("none", "all", "default")  # a None value of a field declaring its ``kind`` (r_list, same_position)


def _kinds() -> tuple[dict[str, tuple[type, tuple]], dict[str, type]]:
    """Each field a sweep may name (the variant classes' fields): its ``kind`` metadata or the
    type of its default (a ``None`` default is a number) and its ``choices`` when they are a
    closed set; and the first class declaring it (which checks its values). A field declaring
    its ``kind`` takes ``NONE_WORDS`` for None."""
    kinds: dict[str, tuple[type, tuple]] = {"mode": (str, MODES)}
    owners: dict[str, type] = {}
    for cls in (AggregateConfig, *PATCH_MODES.values()):
        for f in dataclasses.fields(cls):
            if f.name != "patch" and f.name not in owners:
                kind = f.metadata.get("kind") or (float if f.default is None else type(f.default))
                kinds[f.name] = (kind, f.metadata.get("choices", ()))
                owners[f.name] = cls
    return kinds, owners


KINDS, _OWNERS = _kinds()
DECLARED = frozenset(f.name for cls in PATCH_MODES.values() for f in dataclasses.fields(cls) if "kind" in f.metadata)
PATCH_SELECTION = ("shots", "shot_seed", "reference")
REFERENCE_MODE = next(d.name for d in DETECTORS if d.takes_reference)  # what --shots/--reference select


def parse_axes(spec: str | None) -> Axes:
    """``None``/``seed``: no axis (the seed's variant); ``grid``: the full grid (72 variants);
    else ``key=v1,v2;key=v3``. Values are parsed by the field's type: booleans only
    ``true``/``false``, numbers as numbers, ``logit_scale`` also ``clip``/``winclip``; anything
    else is an error naming the field. Repeated values count once."""
    if spec in (None, "", "seed"):
        return {}
    if spec == "grid":
        return dict(GRID)
    axes: Axes = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, eq, values = (s.strip() for s in part.partition("="))
        if key not in KINDS:
            raise ValueError(f"unknown aggregation field {key!r} in {spec!r}; known: {sorted(KINDS)}")
        if not eq or not values:
            raise ValueError(f"aggregation field {key!r} in {spec!r} has no values; write {key}=v1,v2")
        axes[key] = tuple(dict.fromkeys(_checked(key, parse_value(key, v.strip())) for v in values.split(",")))
    return axes


def _checked(key: str, value: Any) -> Any:
    """``value``, checked by the config class owning ``key`` even where a mode will ignore it."""
    if key in _OWNERS:
        _OWNERS[key](**{key: value})
    return value


def parse_value(key: str, v: str) -> Any:
    """One value of field ``key`` from its text."""
    kind, allowed = KINDS[key]
    if key == "logit_scale" and v.lower() in SCALE_NAMES:
        return SCALE_NAMES[v.lower()]
    if v.lower() in NONE_WORDS and key in DECLARED:
        return None
    if kind is tuple:  # whole numbers joined by "-": r_list=1-3-5
        try:
            return tuple(int(x) for x in v.split("-"))
        except ValueError:
            raise ValueError(f"aggregation field {key!r} takes whole numbers joined by '-' (1-3-5) or "
                             f"{'/'.join(NONE_WORDS)}, got {v!r}") from None
    if kind is bool:
        if v.lower() not in ("true", "false"):
            raise ValueError(f"aggregation field {key!r} takes true or false, got {v!r}")
        return v.lower() == "true"
    if kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            what = "a whole number" if kind is int else ("clip, winclip or a number" if key == "logit_scale"
                                                         else "a number")
            raise ValueError(f"aggregation field {key!r} takes {what}, got {v!r}") from None
    if allowed and v not in allowed:
        raise ValueError(f"aggregation field {key!r} takes one of {', '.join(allowed)}, got {v!r}")
    return v


def with_shots(axes: Axes, *, shots: int | None, seed: int | None, reference: str | None = None) -> Axes:
    """``--shots K --shot-seed S [--reference NAME]`` merged into ``axes``: each becomes an axis
    of one value, and ``mode`` becomes ``few-shot`` when the axes name no mode; ``reference``
    (the data set name of a cached reference folder) without ``shots`` means every image of it.

    Example:
        >>> with_shots({}, shots=None, seed=None, reference="visa-ref-0a1b")
        {'mode': ('few-shot',), 'shots': (0,), 'reference': ('visa-ref-0a1b',)}
    """
    given = {"shots": shots, "shot_seed": seed, "reference": reference}
    if reference is not None and shots is None:
        given["shots"] = 0
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return axes
    if axes == GRID:
        raise ValueError("--shots/--shot-seed extend a sweep such as 'mode=few-shot;fusion=harmonic', "
                         "not 'grid'; or write shots=K;shot_seed=S into --variants")
    named = [k for k in PATCH_SELECTION if k in axes]
    if named:
        raise ValueError(f"--variants already names {', '.join(named)}; drop --shots/--shot-seed/--reference")
    modes = axes.get("mode", (REFERENCE_MODE,))
    if not any(DETECTOR[m].takes_reference for m in modes):
        raise ValueError(f"--shots: --variants has no mode that takes references (mode={','.join(modes)}); add "
                         f"{REFERENCE_MODE} to its mode= values")
    return {**axes, "mode": modes, **{k: (v,) for k, v in given.items()}}


def expand(axes: Axes) -> list[AggregateConfig]:
    """The product of ``axes`` as distinct variants, fields at the seed's values where not named."""
    names = list(axes)
    return list(dict.fromkeys(AggregateConfig.from_fields(**dict(zip(names, combo)))
                              for combo in itertools.product(*(axes[n] for n in names))))


def variant_grid(spec: str | None) -> list[AggregateConfig]:
    """``expand(parse_axes(spec))``: the variants a sweep text names."""
    return expand(parse_axes(spec))


def format_axes(axes: Axes) -> str:
    """``axes`` as sweep text (``seed`` for none); ``parse_axes`` reads it back."""
    if not axes:
        return "seed"
    if axes == GRID:
        return "grid"
    return ";".join(f"{k}={','.join(_text(k, v) for v in vals)}" for k, vals in axes.items())


def _text(key: str, v: Any) -> str:
    if key == "logit_scale" and v in SCALE_NAMES.values():
        return next(name for name, s in SCALE_NAMES.items() if s == v)
    if isinstance(v, tuple):
        return "-".join(map(str, v))
    if v is None:
        return "none"
    return str(v).lower() if isinstance(v, bool) else (repr(v) if isinstance(v, float) else str(v))

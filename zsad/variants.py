"""Aggregation variants: how cached model outputs become scores and maps, and their names.

A variant is an ``AggregateConfig``: the seed's five zero-shot fields and ``patch``, the patch
evidence of a few-shot (``FewShot``, WinCLIP+) or mutual (``Mutual``, MuSc) variant, or None
(zero-shot). A field a mode ignores cannot be set, so equal variants are equal objects and
share a hash. A new field is one field (and its check) in ``AggregateConfig``, ``FewShot`` or
``Mutual``: sweeps take it by its default's type (``zsad.sweep``), and variants at its default
keep the hashes they had before it existed (``hash_view``).

Stored records and sweeps use the flat form (``mode=few-shot;shots=2``): ``from_fields`` builds
a variant from it (dropping what the mode ignores) and ``record`` writes it; ``hash_view`` is
what names a variant in its stage hash, unchanged since the fields were flat.

Example:
    >>> v = AggregateConfig.from_fields(mode="mutual", shots=2)   # mutual ignores shots
    >>> v.patch, v.mode
    (Mutual(mutual_fraction=0.3, combine='mean', neighbourhood=3), 'mutual')
    >>> label(AggregateConfig(patch=FewShot(shots=2)))
    'harmonic/top0.25/scaled/seed-prompts/few-shot2/mean/r1'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .detectors import MODES, PATCH_MODES, Detector, detector, detector_of
from .anomalydino_fields import AnomalyDino, AnomalyDinoBatched
from .variant_fields import COMBINES, MUSC_FOREGROUNDS, PROTOCOLS, FewShot, Musc, Mutual

FUSIONS = ("harmonic", "arithmetic", "geometric")  # how per-prompt CLIPSeg maps are combined
ZERO_SHOT_FIELDS = ("fusion", "top_fraction", "scale_by_tile_score", "seed_states", "logit_scale")
# The flat patch fields of the records and hashes made before the nested config (a mode that
# ignores one hashes it at this value). Fields added since enter a hash only away from their default.
_FLAT: dict[str, Any] = {"combine": "mean", "neighbourhood": None, "mutual_fraction": 0.3, "shots": 4,
                         "shot_seed": 0, "reference": ""}


@dataclass(frozen=True, kw_only=True)
class AggregateConfig:
    """The cheap, re-runnable part: how cached model outputs become scores and maps.

    Attributes:
        fusion: how per-prompt CLIPSeg maps are combined: ``"harmonic"`` (seed),
            ``"arithmetic"`` or ``"geometric"`` mean.
        top_fraction: fraction of foreground components averaged for the sample score (seed 0.25).
        scale_by_tile_score: multiply each tile's pixel map by its tile score (seed: True).
        seed_states: include the seed's extra normal/anomalous states (seed: True); False is
            plain WinCLIP's compositional ensemble.
        logit_scale: the tile-score softmax's scale: ``None`` = the CLIP model's own
            (``logit_scale.exp()``, 100 for the released models); WinCLIP uses temperature 0.07,
            i.e. ``1 / 0.07``. The seed does not say.
        patch: None (zero-shot, the seed), ``FewShot`` or ``Mutual``.
    """

    fusion: str = field(default="harmonic", metadata={"choices": FUSIONS})
    top_fraction: float = 0.25
    scale_by_tile_score: bool = True
    seed_states: bool = True
    logit_scale: float | None = None
    patch: FewShot | Mutual | Musc | AnomalyDino | AnomalyDinoBatched | None = None

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"AggregateConfig.fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"AggregateConfig.top_fraction must be in (0, 1], got {self.top_fraction!r}")
        if self.logit_scale is not None and not self.logit_scale > 0:
            raise ValueError(f"AggregateConfig.logit_scale must be positive or None (CLIP's own), "
                             f"got {self.logit_scale!r}")
        detector_of(self.patch)  # a TypeError naming the kinds for anything else

    @property
    def detector(self) -> Detector:
        """The detector this variant runs (``zsad.detectors``)."""
        return detector_of(self.patch)

    @property
    def mode(self) -> str:
        """Its detector's name (``zsad.detectors``: ``zero-shot``, ``few-shot``, ``musc``, ``anomalydino``...)."""
        return self.detector.name

    @property
    def reads_zero_shot(self) -> bool:
        """Whether its scores and maps use the zero-shot fields (MuSc alone does not)."""
        return "clip_image" in self.detector.reads(self.patch)

    @classmethod
    def from_fields(cls, **flat: Any) -> "AggregateConfig":
        """A variant from the flat fields of sweeps and records (``mode="few-shot", shots=2``);
        fields the mode ignores are dropped, ``neighbourhood=None`` is the mode's default."""
        known = {"mode"} | set(_own_fields(cls)) | {n for k in PATCH_MODES.values() for n in _own_fields(k)}
        unknown = set(flat) - known
        if unknown:
            raise ValueError(f"AggregateConfig has no field(s) {sorted(unknown)}; known: {sorted(known)}")
        kind = detector(flat.get("mode", MODES[0])).fields
        patch = None if kind is None else \
            kind(**{k: v for k, v in flat.items() if k in _own_fields(kind) and v is not None})
        if not cls(patch=patch).reads_zero_shot:  # MuSc alone: the zero-shot fields are ignored
            return cls(patch=patch)
        return cls(**{k: v for k, v in flat.items() if k in _own_fields(cls)}, patch=patch)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AggregateConfig":
        """From ``record()`` output (flat, as stores hold it) or the nested ``{"patch": {...}}``."""
        data = dict(data)
        nested = data.pop("patch", None)
        if isinstance(nested, dict):
            nested = dict(nested)
            data.update(nested, mode=nested.pop("mode", data.get("mode")))
        return cls.from_fields(**data)

    def record(self) -> dict[str, Any]:
        """The flat form stores record: every field, ``mode``, the patch fields (ignored ones at
        ``_FLAT``'s values)."""
        own = {f: getattr(self, f) for f in _own_fields(type(self))}
        patch = {} if self.patch is None else dataclasses.asdict(self.patch)
        return {**own, "mode": self.mode, **_FLAT, **patch}

    to_json = record  # what ``zsad.config.to_jsonable`` writes

    def hash_view(self) -> dict[str, Any]:
        """What names the variant in its hash: a zero-shot one leaves the patch fields out (its
        hash is the one it had before they existed); a patch mode lists all of them, ignored
        ones at ``_FLAT``'s values."""
        view = _since_flat(self, ZERO_SHOT_FIELDS)
        if self.patch is not None:
            view.update(_FLAT, **_since_flat(self.patch, tuple(_FLAT)), mode=self.mode)
        return view

    def with_patch(self, patch: FewShot | Mutual | Musc | AnomalyDino | AnomalyDinoBatched | None) -> "AggregateConfig":
        return dataclasses.replace(self, patch=patch)


def _own_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "patch")


def _since_flat(obj: Any, pinned: tuple[str, ...]) -> dict[str, Any]:
    """``obj``'s fields for a hash: the ``pinned`` ones always, a newer one only off its default."""
    defaults = type(obj)()
    return {n: getattr(obj, n) for n in _own_fields(type(obj))
            if n in pinned or getattr(obj, n) != getattr(defaults, n)}


def label(agg: AggregateConfig) -> str:
    """A variant's human name: the zero-shot part (when it reads it), then its detector's part.

    Example:
        >>> label(AggregateConfig(patch=Mutual(), logit_scale=1 / 0.07))
        'harmonic/top0.25/scaled/seed-prompts/scale14.29/mutual0.3/mean/r3'
    """
    head = f"{agg.fusion}/top{agg.top_fraction:g}/{'scaled' if agg.scale_by_tile_score else 'unscaled'}/" \
           f"{'seed' if agg.seed_states else 'winclip'}-prompts" + \
        ("" if agg.logit_scale is None else f"/scale{agg.logit_scale:.4g}")
    if agg.patch is None:
        return head
    return f"{head}/{agg.patch.label()}" if agg.reads_zero_shot else agg.patch.label()


__all__ = ["AggregateConfig", "AnomalyDino", "AnomalyDinoBatched", "FewShot", "Mutual", "Musc", "MODES", "PATCH_MODES", "FUSIONS", "COMBINES",
           "MUSC_FOREGROUNDS", "PROTOCOLS", "label"]

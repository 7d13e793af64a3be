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
from typing import Any, ClassVar

FUSIONS = ("harmonic", "arithmetic", "geometric")  # how per-prompt CLIPSeg maps are combined
MODES = ("zero-shot", "few-shot", "mutual", "musc")
PROTOCOLS = ("zsad", "musc")  # how MuSc variants are evaluated: maps at each image's size, or MuSc's square
MUSC_FOREGROUNDS = ("none", "restrict", "weight")  # MuSc's map alone, times the seed's foreground, times IS-Net
COMBINES = ("mean", "patch")
ZERO_SHOT_FIELDS = ("fusion", "top_fraction", "scale_by_tile_score", "seed_states", "logit_scale")
# The flat patch fields of the records and hashes made before the nested config (a mode that
# ignores one hashes it at this value). Fields added since enter a hash only away from their default.
_FLAT: dict[str, Any] = {"combine": "mean", "neighbourhood": None, "mutual_fraction": 0.3, "shots": 4,
                         "shot_seed": 0, "reference": ""}


def _check_patch(patch: "FewShot | Mutual") -> None:
    name = type(patch).__name__
    if patch.combine not in COMBINES:
        raise ValueError(f"{name}.combine must be 'mean' (WinCLIP+) or 'patch', got {patch.combine!r}")
    r = patch.neighbourhood
    if not isinstance(r, int) or isinstance(r, bool) or r < 1 or r % 2 == 0:
        raise ValueError(f"{name}.neighbourhood must be an odd whole number >= 1, got {r!r}")


@dataclass(frozen=True, kw_only=True)
class FewShot:
    """Few-shot patch evidence (WinCLIP+): each patch against its nearest reference patch.

    Attributes:
        shots: reference images per class (WinCLIP+ reports 1, 2 and 4; 0 = all there are:
            full-shot), drawn with ``shot_seed`` from the train split of data set ``reference``
            ("" = the data set scored).
        combine: ``mean`` of the zero-shot and patch evidence (WinCLIP+) or ``patch`` alone.
        neighbourhood: largest r x r patch neighbourhood averaged (odd; WinCLIP+: 1).
    """

    MODE: ClassVar[str] = "few-shot"
    shots: int = 4
    shot_seed: int = 0
    reference: str = ""
    combine: str = field(default="mean", metadata={"choices": COMBINES})
    neighbourhood: int = 1

    def __post_init__(self) -> None:
        _check_patch(self)
        if not isinstance(self.shots, int) or isinstance(self.shots, bool) or self.shots < 0:
            raise ValueError(f"FewShot.shots must be a whole number >= 0 (0 = every reference image), "
                             f"got {self.shots!r}")
        if not isinstance(self.shot_seed, int) or isinstance(self.shot_seed, bool):
            raise ValueError(f"FewShot.shot_seed must be a whole number, got {self.shot_seed!r}")
        if not isinstance(self.reference, str):
            raise TypeError(f"FewShot.reference must be a data set name (str), got {self.reference!r}")


@dataclass(frozen=True, kw_only=True)
class Mutual:
    """Mutual patch evidence (MuSc): each patch against the other test images of its class.

    Attributes:
        mutual_fraction: share of the other images averaged (MuSc: the lowest 30 %).
        combine: as ``FewShot.combine``.
        neighbourhood: as ``FewShot``'s (MuSc's 1, 3, 5 on 37 x 37 patches, scaled to 15 x 15: 3).
    """

    MODE: ClassVar[str] = "mutual"
    mutual_fraction: float = 0.3
    combine: str = field(default="mean", metadata={"choices": COMBINES})
    neighbourhood: int = 3

    def __post_init__(self) -> None:
        _check_patch(self)
        if not isinstance(self.mutual_fraction, (int, float)) or not 0 < self.mutual_fraction <= 1:
            raise ValueError(f"Mutual.mutual_fraction must be in (0, 1], got {self.mutual_fraction!r}")


def _ints(value: Any, name: str, *, at_least: int = 0, odd: bool = False) -> tuple[int, ...]:
    """``value`` (a sequence of whole numbers) as a tuple, checked."""
    out = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not out or any(not isinstance(v, int) or isinstance(v, bool) or v < at_least or (odd and v % 2 == 0)
                      for v in out):
        what = "odd whole numbers >= 1" if odd else f"whole numbers >= {at_least}"
        raise ValueError(f"Musc.{name} must be {what} (in a sweep: 1-3-5), got {value!r}")
    return out


@dataclass(frozen=True, kw_only=True)
class Musc:
    """MuSc (``zsad.musc``): whole-image tokens of each test image against the other test images
    of its class, then RsCIN. The defaults are MuSc's own; everything re-runs from the cache.

    Attributes:
        r_list: LNAMD neighbourhood sizes (MuSc: 1, 3, 5); in a sweep ``r_list=1-3-5,1-3``.
        musc_layers: indices into the cached layers (``MuscTokensConfig.layers``) to average;
            None: all (MuSc).
        musc_fraction: share of the other images averaged per patch (MuSc: 0.3, as ``int``).
        rscin: re-score the image scores with RsCIN (MuSc: on).
        k_list: RsCIN's k list; None: the data set's (VisA 1-8-9, MVTec AD and others 1-2-3).
        divide_num: MuSc's subsets: each class split into this many batches (MuSc: 1).
        same_position: None (MuSc) or compare each patch only with the other images' patches
            within that many grid steps of its position (aligned parts; 0: the same position).
        foreground: ``none`` (MuSc), ``restrict`` (the map times the seed's SAM/IS-Net
            foreground mask) or ``weight`` (times the IS-Net probability).
        combine: ``patch`` (MuSc's map and score) or ``mean`` (averaged with the seed's
            zero-shot map and sample score, as WinCLIP+ combines).
    """

    MODE: ClassVar[str] = "musc"
    r_list: tuple[int, ...] = field(default=(1, 3, 5), metadata={"kind": tuple})
    musc_layers: tuple[int, ...] | None = field(default=None, metadata={"kind": tuple})
    musc_fraction: float = 0.3
    rscin: bool = True
    k_list: tuple[int, ...] | None = field(default=None, metadata={"kind": tuple})
    divide_num: int = 1
    same_position: int | None = field(default=None, metadata={"kind": int})
    foreground: str = field(default="none", metadata={"choices": MUSC_FOREGROUNDS})
    combine: str = field(default="patch", metadata={"choices": COMBINES})

    def __post_init__(self) -> None:
        object.__setattr__(self, "r_list", _ints(self.r_list, "r_list", at_least=1, odd=True))
        if self.musc_layers is not None:
            object.__setattr__(self, "musc_layers", _ints(self.musc_layers, "musc_layers"))
        if self.k_list is not None:
            object.__setattr__(self, "k_list", _ints(self.k_list, "k_list", at_least=1))
        if not isinstance(self.musc_fraction, (int, float)) or not 0 < self.musc_fraction <= 1:
            raise ValueError(f"Musc.musc_fraction must be in (0, 1], got {self.musc_fraction!r}")
        if not isinstance(self.divide_num, int) or self.divide_num < 1:
            raise ValueError(f"Musc.divide_num must be a whole number >= 1, got {self.divide_num!r}")
        if self.same_position is not None and (not isinstance(self.same_position, int) or self.same_position < 0):
            raise ValueError(f"Musc.same_position must be None or a whole number of grid steps >= 0, "
                             f"got {self.same_position!r}")
        if self.foreground not in MUSC_FOREGROUNDS:
            raise ValueError(f"Musc.foreground must be one of {', '.join(MUSC_FOREGROUNDS)}, got {self.foreground!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"Musc.combine must be 'patch' (MuSc alone) or 'mean', got {self.combine!r}")

    def k_for(self, dataset: str) -> tuple[int, ...]:
        """RsCIN's k list for data set ``dataset`` (its store name): ``k_list``, else VisA's
        (1, 8, 9) for a name starting with ``visa``, else MuSc's MVTec AD list (1, 2, 3)."""
        if not self.rscin:
            return ()
        if self.k_list is not None:
            return self.k_list
        return (1, 8, 9) if dataset.lower().startswith("visa") else (1, 2, 3)


PATCH_MODES: dict[str, type] = {FewShot.MODE: FewShot, Mutual.MODE: Mutual, Musc.MODE: Musc}


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
    patch: FewShot | Mutual | Musc | None = None

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"AggregateConfig.fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"AggregateConfig.top_fraction must be in (0, 1], got {self.top_fraction!r}")
        if self.logit_scale is not None and not self.logit_scale > 0:
            raise ValueError(f"AggregateConfig.logit_scale must be positive or None (CLIP's own), "
                             f"got {self.logit_scale!r}")
        if self.patch is not None and not isinstance(self.patch, (FewShot, Mutual, Musc)):
            raise TypeError(f"AggregateConfig.patch must be None, FewShot(...), Mutual(...) or Musc(...), "
                            f"got {self.patch!r}")

    @property
    def mode(self) -> str:
        """``zero-shot``, ``few-shot``, ``mutual`` or ``musc``."""
        return "zero-shot" if self.patch is None else self.patch.MODE

    @classmethod
    def from_fields(cls, **flat: Any) -> "AggregateConfig":
        """A variant from the flat fields of sweeps and records (``mode="few-shot", shots=2``);
        fields the mode ignores are dropped, ``neighbourhood=None`` is the mode's default."""
        known = {"mode"} | set(_own_fields(cls)) | {n for k in PATCH_MODES.values() for n in _own_fields(k)}
        unknown = set(flat) - known
        if unknown:
            raise ValueError(f"AggregateConfig has no field(s) {sorted(unknown)}; known: {sorted(known)}")
        mode = flat.get("mode", "zero-shot")
        if mode not in MODES:
            raise ValueError(f"AggregateConfig mode must be one of {', '.join(MODES)}, got {mode!r}")
        patch = None
        if mode in PATCH_MODES:
            kind = PATCH_MODES[mode]
            patch = kind(**{k: v for k, v in flat.items() if k in _own_fields(kind) and v is not None})
        if isinstance(patch, Musc) and patch.combine == "patch":  # MuSc alone: the zero-shot fields are ignored
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

    def with_patch(self, patch: FewShot | Mutual | Musc | None) -> "AggregateConfig":
        return dataclasses.replace(self, patch=patch)


def _own_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "patch")


def _since_flat(obj: Any, pinned: tuple[str, ...]) -> dict[str, Any]:
    """``obj``'s fields for a hash: the ``pinned`` ones always, a newer one only off its default."""
    defaults = type(obj)()
    return {n: getattr(obj, n) for n in _own_fields(type(obj))
            if n in pinned or getattr(obj, n) != getattr(defaults, n)}


def label(agg: AggregateConfig) -> str:
    """A variant's human name: the zero-shot part, then the mode part (none for zero-shot).

    Example:
        >>> label(AggregateConfig(patch=Mutual(), logit_scale=1 / 0.07))
        'harmonic/top0.25/scaled/seed-prompts/scale14.29/mutual0.3/mean/r3'
    """
    head = f"{agg.fusion}/top{agg.top_fraction:g}/{'scaled' if agg.scale_by_tile_score else 'unscaled'}/" \
           f"{'seed' if agg.seed_states else 'winclip'}-prompts" + \
        ("" if agg.logit_scale is None else f"/scale{agg.logit_scale:.4g}")
    p = agg.patch
    if p is None:
        return head
    if isinstance(p, Musc):  # MuSc alone reads none of the zero-shot fields
        return musc_label(p) if p.combine == "patch" else f"{head}/{musc_label(p)}"
    if isinstance(p, FewShot):
        ref = "" if not p.reference else f"@{p.reference}"
        mode = f"few-shot{p.shots or 'all'}{ref}" + (f"s{p.shot_seed}" if p.shot_seed else "")
    else:
        mode = f"mutual{p.mutual_fraction:g}"
    return f"{head}/{mode}/{p.combine}/r{p.neighbourhood}"


def musc_label(p: Musc) -> str:
    """The MuSc part of a label: ``musc0.3/r1-3-5/rscin`` and any field away from MuSc's own.

    Example:
        >>> musc_label(Musc()), musc_label(Musc(rscin=False, same_position=0, foreground="restrict"))
        ('musc0.3/r1-3-5/rscin/patch', 'musc0.3/r1-3-5/same0/fg-restrict/patch')
    """
    dash = lambda v: "-".join(map(str, v))  # noqa: E731
    parts = [f"musc{p.musc_fraction:g}", f"r{dash(p.r_list)}"]
    if p.musc_layers is not None:
        parts.append(f"layers{dash(p.musc_layers)}")
    if p.rscin:
        parts.append("rscin" + ("" if p.k_list is None else dash(p.k_list)))
    if p.divide_num != 1:
        parts.append(f"divide{p.divide_num}")
    if p.same_position is not None:
        parts.append(f"same{p.same_position}")
    if p.foreground != "none":
        parts.append(f"fg-{p.foreground}")
    return "/".join(parts + [p.combine])

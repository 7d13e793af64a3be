"""The variant fields of each detector beyond zero-shot: ``FewShot`` (WinCLIP+), ``Mutual``
(tile-mutual, MuSc-like) and ``Musc`` (MuSc). Each is frozen and checked on construction, and
labels its part of a variant's name (``label``); ``zsad.detectors`` declares the detector each
belongs to, ``zsad.variants`` the whole variant (``AggregateConfig``).

Example:
    >>> FewShot(shots=2).label(), Mutual().label()
    ('few-shot2/mean/r1', 'mutual0.3/mean/r3')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("zsad", "musc")  # how MuSc variants are evaluated: maps at each image's size, or MuSc's square
MUSC_FOREGROUNDS = ("none", "restrict", "weight")  # MuSc's map alone, times the seed's foreground, times IS-Net
COMBINES = ("mean", "patch")


def square_protocol(protocol: str) -> bool:
    """Whether evaluation ``protocol`` puts maps and masks on the token stage's square (``musc``:
    as MuSc evaluates) rather than each image's own size (``zsad``).

    Example:
        >>> square_protocol("zsad"), square_protocol("musc")
        (False, True)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"evaluation protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return protocol == PROTOCOLS[1]


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

    def with_reference(self, name: str) -> "FewShot":
        """These fields against every image of data set ``name``'s train split (``shots=0``)."""
        return dataclasses.replace(self, reference=name, shots=0)

    def label(self) -> str:
        """This part of a variant's label: ``few-shot4/mean/r1`` (``@reference``, ``s{seed}`` when set)."""
        ref = "" if not self.reference else f"@{self.reference}"
        mode = f"few-shot{self.shots or 'all'}{ref}" + (f"s{self.shot_seed}" if self.shot_seed else "")
        return f"{mode}/{self.combine}/r{self.neighbourhood}"


@dataclass(frozen=True, kw_only=True)
class Mutual:
    """Mutual patch evidence (MuSc): each patch against the other test images of its class.

    Attributes:
        mutual_fraction: share of the other images averaged (MuSc: the lowest 30 %).
        combine: as ``FewShot.combine``.
        neighbourhood: as ``FewShot``'s (MuSc's 1, 3, 5 on 37 x 37 patches, scaled to 15 x 15: 3).
    """

    mutual_fraction: float = 0.3
    combine: str = field(default="mean", metadata={"choices": COMBINES})
    neighbourhood: int = 3

    def __post_init__(self) -> None:
        _check_patch(self)
        if not isinstance(self.mutual_fraction, (int, float)) or not 0 < self.mutual_fraction <= 1:
            raise ValueError(f"Mutual.mutual_fraction must be in (0, 1], got {self.mutual_fraction!r}")

    def label(self) -> str:
        """This part of a variant's label: ``mutual0.3/mean/r3``."""
        return f"mutual{self.mutual_fraction:g}/{self.combine}/r{self.neighbourhood}"


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

    def label(self) -> str:
        """This part of a variant's label: ``musc0.3/r1-3-5/rscin/patch`` and any field away from
        MuSc's own.

        Example:
            >>> Musc().label(), Musc(rscin=False, same_position=0, foreground="restrict").label()
            ('musc0.3/r1-3-5/rscin/patch', 'musc0.3/r1-3-5/same0/fg-restrict/patch')
        """
        dash = lambda v: "-".join(map(str, v))  # noqa: E731
        parts = [f"musc{self.musc_fraction:g}", f"r{dash(self.r_list)}"]
        if self.musc_layers is not None:
            parts.append(f"layers{dash(self.musc_layers)}")
        if self.rscin:
            parts.append("rscin" + ("" if self.k_list is None else dash(self.k_list)))
        if self.divide_num != 1:
            parts.append(f"divide{self.divide_num}")
        if self.same_position is not None:
            parts.append(f"same{self.same_position}")
        if self.foreground != "none":
            parts.append(f"fg-{self.foreground}")
        return "/".join(parts + [self.combine])

"""The variant fields of AnomalyDINO's two detectors: ``AnomalyDino`` (few-shot, its official
``run_anomalydino.py``) and ``AnomalyDinoBatched`` (zero-shot over the class's test batch,
``run_anomalydino_batched.py``). Frozen, checked on construction, each labelling its part of a
variant's name; ``zsad.detectors`` declares the detectors, ``zsad.anomalydino`` holds the math.

Example:
    >>> AnomalyDino().label(), AnomalyDino(shots=16, shot_seed=2, rotation=False).label()
    ('anomalydino1/rot/mask-official/k1', 'anomalydino16s2/norot/mask-official/k1')
    >>> AnomalyDinoBatched().label()
    'anomalydino-batched/mask-official/q0.001'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MASKINGS = ("official", "on", "off")  # the per-class table of the official code, every class, none


def _check_masking(kind: str, masking: str) -> None:
    if masking not in MASKINGS:
        raise ValueError(f"{kind}.masking must be one of {', '.join(MASKINGS)} (official: its per-class table), "
                         f"got {masking!r}")


def _whole(kind: str, name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{kind}.{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class AnomalyDino:
    """AnomalyDINO few-shot: each test patch against the patches of ``shots`` reference images.

    Attributes:
        shots: reference images per class: the class's sorted ``train/good`` file names
            ``[shot_seed * shots : (shot_seed + 1) * shots]`` (the official draw).
        reference: the data set whose train split they are drawn from ("" = the data set
            scored; ``predict --reference DIR`` caches DIR as one and names it here).
        neighbours: nearest reference patches averaged (the official ``k_neighbors``: 1).
        rotation: the references' 8 rotations join the memory (the official "agnostic" default).
        masking: ``official`` (the per-class table), ``on`` or ``off``.
    """

    shots: int = 1
    shot_seed: int = 0
    reference: str = ""
    neighbours: int = 1
    rotation: bool = True
    masking: str = field(default="official", metadata={"choices": MASKINGS})

    def __post_init__(self) -> None:
        _whole("AnomalyDino", "shots", self.shots, 1)
        _whole("AnomalyDino", "shot_seed", self.shot_seed, 0)
        _whole("AnomalyDino", "neighbours", self.neighbours, 1)
        if not isinstance(self.rotation, bool):
            raise ValueError(f"AnomalyDino.rotation must be true or false, got {self.rotation!r}")
        if not isinstance(self.reference, str):
            raise TypeError(f"AnomalyDino.reference must be a data set name (str), got {self.reference!r}")
        _check_masking("AnomalyDino", self.masking)

    def with_reference(self, name: str) -> "AnomalyDino":
        """These fields drawing their ``shots`` references from data set ``name``'s train split."""
        return dataclasses.replace(self, reference=name)

    def label(self) -> str:
        """``anomalydino1/rot/mask-official/k1`` (``s{seed}``, ``@reference`` when set)."""
        seed = f"s{self.shot_seed}" if self.shot_seed else ""
        ref = f"@{self.reference}" if self.reference else ""
        return (f"anomalydino{self.shots}{seed}{ref}/{'rot' if self.rotation else 'norot'}/mask-{self.masking}/"
                f"k{self.neighbours}")


@dataclass(frozen=True, kw_only=True)
class AnomalyDinoBatched:
    """AnomalyDINO zero-shot: each test patch against every patch of the class's other test images.

    Attributes:
        masking: ``official`` (the per-class table), ``on`` or ``off``.
        quantile: the fraction of the batch's other patches whose distances are averaged (the
            official 0.001; a tiny batch needs more).
    """

    masking: str = field(default="official", metadata={"choices": MASKINGS})
    quantile: float = 0.001

    def __post_init__(self) -> None:
        _check_masking("AnomalyDinoBatched", self.masking)
        if isinstance(self.quantile, bool) or not isinstance(self.quantile, (int, float)) or not 0 < self.quantile <= 1:
            raise ValueError(f"AnomalyDinoBatched.quantile must be in (0, 1], got {self.quantile!r}")

    def label(self) -> str:
        return f"anomalydino-batched/mask-{self.masking}/q{self.quantile:g}"

"""Decision thresholds: where a score becomes "anomalous".

One rule everywhere: an image (or pixel) is anomalous when its score is ``>= threshold``.
Thresholds come from data, never from a constant:

* ``f1``: the threshold at which F1 is largest on labelled images (the F1-max point);
* ``fpr``: from normal images only, the smallest threshold at which at most a fraction
  ``fpr`` of them are flagged (a line with a few known-good images and no defects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold of the F1-max point (NaN without a positive and a negative).

    Ties in F1 go to the highest threshold (fewest alarms).

    Example:
        >>> f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))  # F1 0.8 at 0.4
        0.4
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if not labels.any() or labels.all():
        return math.nan
    from sklearn.metrics import precision_recall_curve  # here: aggregation workers need no scikit-learn
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    p, r = precision[:-1], recall[:-1]  # the last point has no threshold
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    best = np.flatnonzero(f1 == f1.max())
    return float(thresholds[best].max())


def fpr_threshold(normal_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold flagging at most ``floor(fpr * n)`` of ``n`` normal scores.

    It lies just above the ``(k + 1)``-th largest normal score (``k = floor(fpr * n)``), so on
    the normal images it was computed from the false-alarm rate is at most ``fpr``.

    Example:
        >>> t = fpr_threshold(np.array([0.1, 0.2, 0.3, 0.4]), 0.25)   # k = 1: 0.4 may alarm
        >>> 0.3 < t < 0.3001, int((np.array([0.1, 0.2, 0.3, 0.4]) >= t).sum())
        (True, 1)
        >>> fpr_threshold(np.array([0.5, 0.5]), 0.01) > 0.5                # k = 0: above them all
        True
    """
    s = np.sort(np.asarray(normal_scores, np.float64).ravel())[::-1]
    if s.size == 0:
        raise ValueError("an FPR threshold needs at least one normal score; got none")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr!r}")
    k = int(math.floor(fpr * s.size + 1e-9))
    return float(np.nextafter(s[k], np.inf))


def histogram_fpr_threshold(neg_counts: np.ndarray, bin_values: np.ndarray, fpr: float) -> float:
    """``fpr_threshold`` on a histogram: the lowest bin value flagging at most ``fpr`` of the scores.

    ``neg_counts[i]`` counts normal scores equal to ``bin_values[i]`` (increasing); a score is
    flagged when it is ``>=`` the threshold. If even the top bin holds more than ``fpr``, the
    threshold lies just above the top bin's value (as ``fpr_threshold`` goes just above the top
    score), so no normal score is flagged.

    Example:
        >>> histogram_fpr_threshold(np.array([90, 9, 1, 0]), np.array([0.0, 0.25, 0.5, 0.75]), 0.05)
        0.5
    """
    neg = np.asarray(neg_counts, np.int64)
    total = neg.sum()
    if total == 0:
        raise ValueError("a pixel FPR threshold needs normal pixels; got none")
    flagged = np.cumsum(neg[::-1])[::-1] / total  # fraction at or above each bin's value
    ok = np.flatnonzero(flagged <= fpr + 1e-12)
    if ok.size:
        return float(bin_values[int(ok[0])])
    return float(np.nextafter(float(bin_values[-1]), np.inf))  # even the top bin alone is too many: above it


@dataclass(frozen=True)
class Threshold:
    """A stored threshold and where it came from.

    Attributes:
        value: the score threshold (anomalous iff score >= value).
        kind: ``"f1"`` or ``"fpr"``.
        dataset: the data set it was computed on; ``n_images`` how many images it used.
        fpr: the target false-alarm rate (``kind == "fpr"`` only).
    """

    value: float
    kind: str
    dataset: str
    n_images: int
    fpr: float | None = None

    def describe(self) -> str:
        how = "F1-max on labelled images" if self.kind == "f1" else f"FPR {self.fpr:g} on normal images"
        return f"{self.value:.6g} ({how} of {self.dataset!r}, {self.n_images} images)"


def decide(score: float, threshold: float | None) -> str:
    """``"anomalous"``, ``"normal"`` or ``"unknown"`` (no threshold).

    Example:
        >>> decide(0.7, 0.7), decide(0.69, 0.7), decide(0.5, None)
        ('anomalous', 'normal', 'unknown')
    """
    if threshold is None or math.isnan(threshold):
        return "unknown"
    return "anomalous" if score >= threshold else "normal"


STORED_KINDS = ("f1", "fpr")  # thresholds a store holds (``zsad evaluate``, ``zsad calibrate``)


@dataclass(frozen=True)
class ThresholdSpec:
    """How a decision threshold is chosen, parsed once where the text enters (CLI, HTTP):
    ``auto`` (the stored F1-max one, else the stored FPR one), ``f1`` or ``fpr`` (that stored
    one), ``none`` (score without deciding) or ``value`` (a given finite number).

    Example:
        >>> ThresholdSpec.parse("0.5"), ThresholdSpec.parse("fpr").stored_kinds
        (ThresholdSpec(kind='value', value=0.5), ('fpr',))
        >>> str(ThresholdSpec.parse("auto")), ThresholdSpec.parse("none").decides
        ('auto', False)
        >>> ThresholdSpec.parse("inf")
        Traceback (most recent call last):
        ...
        ValueError: --threshold must be a finite number, got 'inf'
    """

    kind: str
    value: float | None = None

    WORDS = ("auto",) + STORED_KINDS + ("none",)

    def __post_init__(self) -> None:
        if self.kind not in self.WORDS + ("value",):
            raise ValueError(f"a threshold is one of {', '.join(self.WORDS)} or a value, got kind {self.kind!r}")
        if (self.kind == "value") != (self.value is not None) or (self.value is not None and
                                                                   not math.isfinite(self.value)):
            raise ValueError(f"a {self.kind} threshold takes {'a finite' if self.kind == 'value' else 'no'} value, "
                             f"got {self.value!r}")

    @classmethod
    def parse(cls, text: str, option: str = "--threshold") -> "ThresholdSpec":
        """``text`` as a spec; a ``ValueError`` naming ``option`` and what it takes otherwise."""
        if isinstance(text, ThresholdSpec):
            return text
        word = str(text).strip().lower()
        if word in cls.WORDS:
            return cls(word)
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{option} must be auto, f1, fpr, none or a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{option} must be a finite number, got {text!r}")
        return cls("value", value)

    @property
    def decides(self) -> bool:
        """Whether a score is decided at all (not ``none``)."""
        return self.kind != "none"

    @property
    def stored_kinds(self) -> tuple[str, ...]:
        """The stored kinds it takes, in order of preference (none for ``none`` and a value)."""
        return {"auto": STORED_KINDS, "f1": ("f1",), "fpr": ("fpr",)}.get(self.kind, ())

    def __str__(self) -> str:
        return f"{self.value:g}" if self.kind == "value" else self.kind


AUTO = ThresholdSpec("auto")

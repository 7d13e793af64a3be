"""Decision thresholds as data: stored per class under an aggregate variant's hash.

``thresholds/{variant_hash}/{class}`` holds, for image scores and pixel maps, an ``f1``
threshold (from labelled images: ``zsad evaluate``) and/or an ``fpr`` one (from normal images
only: ``zsad calibrate``), each with the data set and number of images it came from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from zsad.stores import StageStore, threshold_key
from zsad.thresholds import Threshold

LEVELS = ("image", "pixel")
KINDS = ("f1", "fpr")


def save_thresholds(store: StageStore, variant_hash: str, class_name: str,
                    found: dict[str, dict[str, Threshold]]) -> str:
    """Merge ``found`` (``{"image"|"pixel": {"f1"|"fpr": Threshold}}``) into the stored record
    (a newer threshold of the same level and kind replaces the older one). NaN ones are skipped."""
    store.ensure_stage("thresholds", variant_hash, {"variant": variant_hash}, {"aggregate": variant_hash})
    key = threshold_key(variant_hash, class_name)
    record = {lvl: dict(v) for lvl, v in load_record(store, variant_hash, class_name).items()}
    for level, by_kind in found.items():
        for kind, t in by_kind.items():
            if t is not None and not math.isnan(t.value):
                record.setdefault(level, {})[kind] = dataclasses.asdict(t)
    return store.write_unit(key, {}, {"class": class_name, **record})


def load_record(store: StageStore, variant_hash: str, class_name: str) -> dict[str, dict[str, dict]]:
    key = threshold_key(variant_hash, class_name)
    if not store.is_complete(key):
        return {}
    attrs = store.read_attrs(key)
    return {lvl: attrs[lvl] for lvl in LEVELS if lvl in attrs}


def stored_thresholds(store: StageStore, variant_hash: str, class_name: str) -> dict[str, dict[str, Threshold]]:
    """``{"image"|"pixel": {"f1"|"fpr": Threshold}}`` of one class and variant (possibly empty)."""
    return {lvl: {k: Threshold(**t) for k, t in kinds.items()}
            for lvl, kinds in load_record(store, variant_hash, class_name).items()}


class MissingThreshold(ValueError):
    """No stored threshold of the kind asked for (the message names the commands that make one)."""


@dataclass(frozen=True)
class Decision:
    """The thresholds ``predict`` uses for one class, and how they were chosen."""

    image: float | None
    pixel: float | None
    source: str

    def as_row(self) -> dict[str, Any]:
        return {"threshold": self.image, "pixel_threshold": self.pixel, "threshold_source": self.source}


def _pick(stored: dict[str, Threshold], kind: str) -> Threshold | None:
    if kind == "auto":
        return stored.get("f1") or stored.get("fpr")
    return stored.get(kind)


def resolve_thresholds(spec: str, pixel_spec: str | None, store: StageStore, variant_hash: str,
                       class_name: str, store_url: str) -> Decision:
    """Turn ``--threshold auto|f1|fpr|none|VALUE`` and ``--pixel-threshold`` into numbers.

    ``auto`` prefers the F1-max threshold and falls back to the FPR one; a number is used as it
    is; ``none`` scores without deciding. Stored thresholds that are missing are an error naming
    the commands that make them.
    """
    stored = stored_thresholds(store, variant_hash, class_name)
    image, pixel, source = None, None, "none"
    if spec not in ("none",):
        if spec in ("auto",) + KINDS:
            t = _pick(stored.get("image", {}), spec)
            if t is None:
                raise MissingThreshold(
                    f"no stored {'' if spec == 'auto' else spec + ' '}threshold for class {class_name!r} under "
                    f"variant {variant_hash} in {store_url}. Make one with `zsad evaluate --store {store_url} "
                    f"--dataset D --root R --classes {class_name}` (labelled images: F1-max) or `zsad calibrate "
                    f"--store {store_url} --class {class_name} --good DIR --fpr 0.01` (known-good images only), "
                    "or pass --threshold VALUE")
            image, source = t.value, f"stored {t.kind}: {t.describe()}"
        else:
            image, source = _number(spec, "--threshold"), "given"
    if pixel_spec not in (None, "auto"):
        pixel = None if pixel_spec == "none" else _number(pixel_spec, "--pixel-threshold")
    else:
        t = _pick(stored.get("pixel", {}), "auto" if spec in ("auto", "none") or spec not in KINDS else spec)
        pixel = t.value if t is not None else None
    return Decision(image, pixel, source)


THRESHOLD_WORDS = ("auto",) + KINDS + ("none",)


def check_threshold_spec(text: str, option: str = "--threshold") -> str:
    """``text`` if it is a threshold spec (``auto``, ``f1``, ``fpr``, ``none`` or a finite number),
    else a ``ValueError`` saying so.

    Example:
        >>> check_threshold_spec("0.5"), check_threshold_spec("fpr")
        ('0.5', 'fpr')
        >>> check_threshold_spec("inf")
        Traceback (most recent call last):
        ...
        ValueError: --threshold must be a finite number, got 'inf'
    """
    if text not in THRESHOLD_WORDS:
        _number(text, option)
    return text


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option} must be auto, f1, fpr, none or a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{option} must be a finite number, got {text!r}")
    return value

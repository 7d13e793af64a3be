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
from zsad.thresholds import AUTO, Threshold, ThresholdSpec

LEVELS = ("image", "pixel")


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


def _pick(stored: dict[str, Threshold], kinds: tuple[str, ...]) -> Threshold | None:
    return next((stored[k] for k in kinds if k in stored), None)


def resolve_thresholds(spec: ThresholdSpec, pixel_spec: ThresholdSpec | None, store: StageStore, variant_hash: str,
                       class_name: str, store_url: str) -> Decision:
    """Turn ``--threshold`` and ``--pixel-threshold`` (``zsad.thresholds.ThresholdSpec``) into numbers.

    ``auto`` prefers the F1-max threshold and falls back to the FPR one; a value is used as it
    is; ``none`` scores without deciding. A stored image threshold that is missing is an error
    naming the commands that make one; the pixel threshold (``None``: as the image one chose)
    is left out when none is stored.
    """
    stored = stored_thresholds(store, variant_hash, class_name)
    image, source = spec.value, "given" if spec.value is not None else "none"
    if spec.stored_kinds:
        t = _pick(stored.get("image", {}), spec.stored_kinds)
        if t is None:
            which = "" if spec == AUTO else f"{spec} "
            raise MissingThreshold(
                f"no stored {which}threshold for class {class_name!r} under "
                f"variant {variant_hash} in {store_url}. Make one with `zsad evaluate --store {store_url} "
                f"--dataset D --root R --classes {class_name}` (labelled images: F1-max) or `zsad calibrate "
                f"--store {store_url} --class {class_name} --good DIR --fpr 0.01` (known-good images only), "
                "or pass --threshold VALUE")
        image, source = t.value, f"stored {t.kind}: {t.describe()}"
    pixel_spec = pixel_spec or (spec if len(spec.stored_kinds) == 1 else AUTO)
    pixel = pixel_spec.value
    if pixel_spec.stored_kinds:
        t = _pick(stored.get("pixel", {}), pixel_spec.stored_kinds)
        pixel = t.value if t is not None else None
    return Decision(image, pixel, source)

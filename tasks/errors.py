"""Per-image failures kept in the store: ``errors/{image_hash}/{dataset}/{class}/{split}/{id}``.

A failed image gets a record (stage, path, reason, time) so that ``zsad cache list`` and the
report can show it; the record is removed when a later run computes the image (a fixed file
is retried: failures are never cached as results).
"""

from __future__ import annotations

import time
from typing import Any

from stores import StageStore, Unit, stage_root, unit_key


def record_failures(store: StageStore, image_hash: str, failed: list[dict[str, str]]) -> None:
    """Write one record per failed image (records without a unit, e.g. a missing path, are skipped);
    an image failing again the same way keeps its record (a rerun writes nothing new)."""
    with_unit = [f for f in failed if f.get("unit")]
    if not with_unit:
        return
    store.ensure_stage("errors", image_hash, {"what": "per-image failures"}, {"image": image_hash})
    for f in with_unit:
        key = unit_key("errors", image_hash, Unit.parse(f["unit"]))
        if store.is_complete(key):
            old = store.read_attrs(key)
            if (old.get("stage"), old.get("error")) == (f["stage"], f["error"]):
                continue
        store.write_unit(key, {}, dict(f, time=time.time()))


def clear_failures(store: StageStore, image_hash: str, dataset: str, done: list[str]) -> int:
    """Remove the records of images that are now done; returns how many were removed."""
    if not store.children(f"{stage_root('errors', image_hash)}/{dataset}"):
        return 0  # one listing when there is nothing to clear
    removed = 0
    for path in done:
        key = unit_key("errors", image_hash, Unit.parse(path))
        if store.is_complete(key):
            store.delete(key)
            removed += 1
    return removed


def list_failures(store: StageStore, image_hash: str, dataset: str) -> list[dict[str, Any]]:
    """The failure records of a data set, sorted by unit."""
    return [store.read_attrs(unit_key("errors", image_hash, u))
            for u in store.list_units("errors", image_hash, dataset)]

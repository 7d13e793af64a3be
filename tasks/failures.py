"""One image's failure in one stage (``Failure``), and the failure records kept in the store:
``errors/{image_hash}/{dataset}/{class}/{split}/{id}``.

A failed image gets a record (stage, path, reason, time) so that ``zsad cache list`` and the
report can show it; the record is removed when a later run computes the image (a fixed file
is retried: failures are never cached as results).

Example:
    >>> f = Failure.of(Unit("visa", "pcb1", "test", "000"), "sam", "/d/000.png", ValueError("/d/000.png: empty"))
    >>> f.text(), Failure.from_record(f.record()) == f
    ('/d/000.png: empty (stage sam)', True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

from zsad.stores import StageStore, Unit, dataset_key, unit_key


@dataclass(frozen=True)
class Failure:
    """Why one input failed. ``unit``: its place in the store, None for an input that never got
    one (a missing path, an empty folder); ``path``: the file; ``stage``: where (``input`` for
    what was named on the command line)."""

    unit: Unit | None
    stage: str
    path: str
    error: str

    @classmethod
    def of(cls, unit: Unit | None, stage: str, path: str, exc: BaseException | str) -> "Failure":
        return cls(unit, stage, str(path), exc if isinstance(exc, str) else (str(exc) or type(exc).__name__))

    def text(self) -> str:
        """``path: reason (stage S)``, without repeating a path the reason already starts with."""
        msg = self.error if self.error.startswith(self.path) else f"{self.path}: {self.error}"
        return f"{msg} (stage {self.stage})"

    def record(self) -> dict[str, str]:
        """The JSON-able record (the store's ``errors`` units, flow summaries, the CLI)."""
        return {"unit": self.unit.path if self.unit else "", "stage": self.stage, "path": self.path,
                "error": self.error}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Failure":
        return cls(Unit.parse(rec["unit"]) if rec.get("unit") else None, rec["stage"], rec["path"], rec["error"])


def record_failures(store: StageStore, image_hash: str, failed: Iterable[Failure]) -> None:
    """Write one record per failed image (failures without a unit are skipped); an image failing
    again the same way keeps its record (a rerun writes nothing new)."""
    with_unit = [f for f in failed if f.unit is not None]
    if not with_unit:
        return
    store.ensure_stage("errors", image_hash, {"what": "per-image failures"}, {"image": image_hash})
    for f in with_unit:
        key = unit_key("errors", image_hash, f.unit)
        if store.is_complete(key):
            old = store.read_attrs(key)
            if (old.get("stage"), old.get("error")) == (f.stage, f.error):
                continue
        store.write_unit(key, {}, dict(f.record(), time=time.time()))


def clear_failures(store: StageStore, image_hash: str, dataset: str, done: Iterable[Unit]) -> int:
    """Remove the records of images that are now done; returns how many were removed."""
    if not store.children(dataset_key("errors", image_hash, dataset)):
        return 0  # one listing when there is nothing to clear
    removed = 0
    for unit in done:
        key = unit_key("errors", image_hash, unit)
        if store.is_complete(key):
            store.delete(key)
            removed += 1
    return removed


def list_failures(store: StageStore, image_hash: str, dataset: str) -> list[dict[str, Any]]:
    """The failure records of a data set (with their time), sorted by unit."""
    return [store.read_attrs(unit_key("errors", image_hash, u))
            for u in store.list_units("errors", image_hash, dataset)]

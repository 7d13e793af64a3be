"""A per-stage index of complete units, so that a warm run need not read every unit.

On object storage each completeness check is a round trip; a fully cached precompute of VisA
would make ~150,000 of them. Each run that finds or writes complete units therefore appends
one small record per (stage, data set) and task — ``_index/{stage}/{hash}/{dataset}/{writer}``,
a Zarr group whose attributes map unit paths to what a skip needs (the source image's sha256;
for registered images also path, size and mtime) — and a reader lists those records once.

The index is only ever a hint that a unit is complete: it is appended after the unit's marker
is written, so a unit killed mid-write is never in it; a unit missing from it is checked the
usual way (the marker stays authoritative); a record that cannot be read is ignored. When a
reader finds more than ``MERGE_AFTER`` records it writes them merged and deletes them (a reader
racing that merge may miss entries and falls back to reading units). Records never need locks:
each writer writes its own, under a unique name.

A unit this process wrote carries its compact document (attributes and how to decode each
array: ``zsad.stores.objectio``) into its index entry (``note`` then ``add`` or ``flush``), so that
a later reader trusting the index reads a unit's arrays without first reading its metadata.

It is used on object storage (``ZSAD_UNIT_INDEX=auto``, the default; ``1`` everywhere, ``0``
nowhere). Trusting it assumes what concurrent runs must respect anyway: no two processes write
the same unit at once. ``zsad precompute --verify`` reads every unit's marker instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

INDEX_ROOT = "_index"
MERGE_AFTER = 8
LOG = logging.getLogger(__name__)


def _writer_name() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class UnitIndex:
    """The index of one ``StageStore`` (read once per (stage, hash, data set) and process).

    ``entries(stage, hash, dataset)`` maps unit paths (``dataset/class/split/id``) to their
    recorded facts (at least ``source``); ``add`` appends a record; ``forget`` drops what was
    read, so that the next run sees other writers' records and deletions.
    """

    def __init__(self, store, enabled_by_default: bool) -> None:
        self.store = store
        self._cache: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        setting = os.environ.get("ZSAD_UNIT_INDEX", "auto")
        # auto: object storage only (a local marker read costs ~0.1 ms; there the marker is read every time)
        self.enabled = setting == "1" or (setting == "auto" and enabled_by_default)
        self.trusted = True  # False (``precompute --verify``): read every marker, still record what is found
        self._docs: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}  # written, not yet recorded

    @staticmethod
    def base(stage: str, stage_hash: str, dataset: str) -> str:
        return f"{INDEX_ROOT}/{stage}/{stage_hash}/{dataset}"

    def entries(self, stage: str, stage_hash: str, dataset: str) -> dict[str, dict[str, Any]]:
        if not (self.enabled and self.trusted):
            return {}
        key = (stage, stage_hash, dataset)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._read(self.base(*key))
            return self._cache[key]

    def _read(self, base: str) -> dict[str, dict[str, Any]]:
        records, names = [], self.store.children(base)
        for name in names:
            try:
                attrs = self.store.record_attrs(f"{base}/{name}")
                records.append((float(attrs["written"]), name, dict(attrs["units"])))
            except Exception:  # noqa: BLE001 - half-written or foreign: a hint less, nothing more
                continue
        merged: dict[str, dict[str, Any]] = {}
        for _, _, units in sorted(records):  # later records win (a re-registered image)
            merged.update(units)
        if len(names) > MERGE_AFTER:
            self._write(base, merged)
            for name in names:
                self._delete(f"{base}/{name}")
        return merged

    @staticmethod
    def _split(key: str) -> tuple[tuple[str, str, str], str] | None:
        parts = key.split("/", 2)
        if len(parts) < 3 or parts[0] == INDEX_ROOT:
            return None
        return (parts[0], parts[1], parts[2].split("/", 1)[0]), parts[2]

    def doc(self, key: str) -> dict[str, Any] | None:
        """The compact document the index holds for unit ``key`` (None: ask the store)."""
        split = self._split(key) if self.enabled and self.trusted else None
        if split is None:
            return None
        entry = self.entries(*split[0]).get(split[1])
        return entry.get("doc") if entry else None

    def note(self, key: str, doc: dict[str, Any]) -> None:
        """A unit this process wrote (complete): its document goes into its next record."""
        split = self._split(key) if self.enabled else None
        if split is not None:
            with self._lock:
                self._docs.setdefault(split[0], {})[split[1]] = doc

    def flush(self, stages: tuple[str, ...]) -> None:
        """Record every unit of ``stages`` written since the last record (one record per stage,
        hash and data set); never raises."""
        with self._lock:
            keys = [k for k in self._docs if k[0] in stages]
        for key in keys:
            self.add(*key, {})

    def add(self, stage: str, stage_hash: str, dataset: str, units: dict[str, dict[str, Any]]) -> None:
        """Record ``units`` (all complete, with their facts) and every unit of this stage, hash
        and data set this process wrote since, with their documents; never raises."""
        key = (stage, stage_hash, dataset)
        with self._lock:
            docs = self._docs.pop(key, {})
        units = {**{p: {"source": d["attrs"].get("source")} for p, d in docs.items()}, **units}
        for path, doc in docs.items():
            units[path] = {**units[path], "doc": doc}
        if not units or not self.enabled:
            return
        self._write(self.base(*key), units)
        with self._lock:
            if key in self._cache:
                self._cache[key].update(units)

    def _write(self, base: str, units: dict[str, dict[str, Any]]) -> None:
        try:
            self.store.write_record(f"{base}/{_writer_name()}", {"written": time.time(), "units": units})
        except Exception as exc:  # noqa: BLE001 - the units are complete; only the shortcut is lost
            LOG.warning("could not write the unit index at %s: %s", base, exc)

    def _delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception as exc:  # noqa: BLE001
            LOG.warning("could not delete merged index record %s: %s", key, exc)

    def forget(self, stage: str | None = None, stage_hash: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._cache if stage is None or k[:2] == (stage, stage_hash)]:
                del self._cache[key]

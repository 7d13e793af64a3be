"""Listing, maintenance and records of a ``StageStore`` (its hierarchy rather than its units):
children, the complete units of a stage, the stage groups, attribute-only records (the unit
index's), deletion, temp-folder sweeps and sizes. Mixed into ``StageStore``; the bytes are the
backend's (``zsad.stores.backends``)."""

from __future__ import annotations

from typing import Any, Iterator

from .index import INDEX_ROOT
from .keys import Unit, check_component, stage_root


class Hierarchy:
    """The methods of ``StageStore`` that walk or change its hierarchy (see that class)."""

    # ---- listing and maintenance --------------------------------------------------------------
    def children(self, key: str) -> list[str]:
        """Names below ``key`` (one listing; no metadata read, so a folder a killed run left
        without its ``zarr.json`` is still listed). Hidden names and metadata files are left out."""
        return sorted(n for n in self.backend.children(key) if not n.startswith("."))

    def list_units(self, stage: str, stage_hash: str, dataset: str, classes: list[str] | None = None,
                   split: str | None = None) -> list[Unit]:
        """Complete units of one stage and data set, sorted (indexed ones without a read)."""
        base = f"{stage_root(stage, stage_hash)}/{check_component(dataset, 'dataset')}"
        indexed, out = self.index.entries(stage, stage_hash, dataset), []
        for cls in classes or self.children(base):
            for sp in ([split] if split else self.children(f"{base}/{cls}")):
                for image_id in self.children(f"{base}/{cls}/{sp}"):
                    unit = Unit(dataset, cls, sp, image_id)
                    if unit.path in indexed or self.is_complete(f"{base}/{unit.class_name}/{sp}/{image_id}"):
                        out.append(unit)
        return sorted(out)

    def stages(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(stage, stage_hash, attrs) of every stage group in the store."""
        for stage in self.children(""):
            if stage == INDEX_ROOT:
                continue
            for h in self.children(stage):
                try:
                    yield stage, h, dict(self.root[f"{stage}/{h}"].attrs)
                except KeyError:  # a folder without group metadata: not a stage group
                    continue

    def unit_keys(self) -> Iterator[str]:
        """The key of every complete unit (per image, per class or per stage), walking each stage
        group down to the image level; folders without the completeness marker are passed over."""
        for stage, h, _ in self.stages():
            stack = [f"{stage}/{h}"]
            while stack:
                key = stack.pop()
                if self.is_complete(key):
                    yield key
                elif key.count("/") < 6:  # stage/hash/dataset/class/split/image: the deepest unit
                    stack += [f"{key}/{c}" for c in self.children(key)]

    def write_record(self, key: str, attrs: dict[str, Any]) -> None:
        """A small group holding only attributes (index records): atomic rename on a local disk,
        one object written elsewhere; not a unit, not counted in ``writes``."""
        self._check_writable(key)
        self.backend.require_parents(key.rsplit("/", 1)[0])
        self.backend.write_record(key, attrs)

    def record_attrs(self, key: str) -> dict[str, Any] | None:
        """A record's attributes (``write_record``), or None when it cannot be read: one read."""
        return self.backend.record_attrs(key)

    def delete(self, key: str) -> None:
        """Delete a unit or group; deleting a stage group (``stage/hash``) deletes its index too."""
        self._check_writable(key)
        parts = key.split("/")
        if len(parts) == 2 and parts[0] != INDEX_ROOT:
            self.delete(f"{INDEX_ROOT}/{key}")
            self.index.forget(*parts)
        with self._lock:
            self.backend.forget(key)
            self.backend.remove(key)

    def sweep_temps(self) -> int:
        """Remove temp folders left by writers killed mid-unit (local stores; live writers' temp
        folders are kept); returns how many."""
        return self.backend.sweep_temps()

    def size_bytes(self, key: str = "") -> int:
        """Bytes under ``key``: a walk of the folder, or one recursive listing of an object store."""
        return self.backend.size_bytes(key)

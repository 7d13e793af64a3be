"""Listing, maintenance and records of a ``StageStore`` (its hierarchy rather than its units):
children, the complete units of a stage, the stage groups, attribute-only records (the unit
index's), deletion, temp-folder sweeps and sizes. Mixed into ``StageStore``."""

from __future__ import annotations

import os
import shutil
from typing import Any, Iterator

from zarr.core.sync import sync

from . import fastio
from .index import INDEX_ROOT
from .keys import Unit, check_component, stage_root
from .temps import sweep_temp_folders


async def _list_dir(store, prefix: str) -> list[str]:
    return [name async for name in store.list_dir(prefix)]


class Hierarchy:
    """The methods of ``StageStore`` that walk or change its hierarchy (see that class)."""

    # ---- listing and maintenance --------------------------------------------------------------
    def children(self, key: str) -> list[str]:
        """Names below ``key`` (one listing; no metadata read, so a folder a killed run left
        without its ``zarr.json`` is still listed). Hidden names and metadata files are left out."""
        if self.local:
            try:
                names = [e.name for e in os.scandir(self.path / key) if e.is_dir(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                return []
        else:
            names = [n for n in sync(_list_dir(self.root.store, key)) if n != "zarr.json"]
        return sorted(n for n in names if not n.startswith("."))

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

    def write_record(self, key: str, attrs: dict[str, Any]) -> None:
        """A small group holding only attributes (index records): atomic rename on a local disk,
        one object written elsewhere."""
        if self.local:
            parent, name = key.rsplit("/", 1)
            self._require_parents(parent)
            self._write_local(parent, name, {}, attrs)  # not a unit: not counted in ``writes``
            return
        self._require_parents(key.rsplit("/", 1)[0])
        self.objects.write(key, {}, attrs)

    def record_attrs(self, key: str) -> dict[str, Any] | None:
        """A record's attributes (``write_record``), or None when it cannot be read: one read."""
        if self.local:
            return fastio.read_attrs(self.path / key)
        doc = self.objects.read_doc(key)
        return None if doc is None else doc["attrs"]

    def delete(self, key: str) -> None:
        """Delete a unit or group; deleting a stage group (``stage/hash``) deletes its index too."""
        parts = key.split("/")
        if len(parts) == 2 and parts[0] != INDEX_ROOT:
            self.delete(f"{INDEX_ROOT}/{key}")
            self.index.forget(*parts)
        if len(parts) >= 6:
            self.recent.drop(key)
        else:
            self.recent.clear()
            self._parents = {p for p in self._parents if not (p + "/").startswith(key + "/")}
        with self._lock:
            if self.local:
                shutil.rmtree(self.path / key, ignore_errors=True)
            elif key in self.root:
                del self.root[key]

    def sweep_temps(self) -> int:
        """Remove temp folders left by writers killed mid-unit (local stores; live writers' temp
        folders are kept); returns how many."""
        return sweep_temp_folders(self.path) if self.local and self.path.is_dir() else 0

    def size_bytes(self, key: str = "") -> int:
        """Bytes under ``key``: a walk of the folder, or one recursive listing of an object store."""
        if self.local:
            return sum(f.stat().st_size for f in (self.path / key).rglob("*") if f.is_file())
        fs, root = self.root.store.fs, self.root.store.path.rstrip("/")  # zarr's fs is asynchronous
        return int(sync(fs._du(f"{root}/{key}".rstrip("/"), total=True)))
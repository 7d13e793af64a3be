"""Zarr v3 stage store. The store, not Prefect, decides what is done.

A *unit* (one image of one stage, or one class for ``clip_text``) is a group holding its
arrays and, written last, the attribute ``complete`` (with the sha256 of its source image).
A unit without it is never read and is recomputed. On a local disk a unit is written into a
hidden sibling folder and renamed into place, so readers and concurrent runs never see half
a unit; on other fsspec stores (object storage) it is written in place, marker last, in a
few requests (``stores.objectio``), and concurrent runs must work on disjoint units (Zarr 3
has no locks). Arrays are not sharded.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from . import fastio
from .objectio import ObjectUnits
from .recent import RecentUnits
from .hierarchy import Hierarchy
from .index import INDEX_ROOT, UnitIndex
from .keys import check_component, stage_root
from .options import FRESH_LISTINGS, StoreError, env_storage_options, library_versions
from .temps import _HOST, TMP_PREFIX

COMPLETE = "complete"


def _despite_races(create):
    """``create()``, retried while another process is creating the same Zarr group this instant
    (two runs starting on one shared store both see it missing; one wins). None if it never settles."""
    for attempt in range(5):
        try:
            return create()
        except zarr.errors.ContainsGroupError:
            time.sleep(0.05 * (attempt + 1))  # the other writer's group is there now: open it
    return None


class StageStore(Hierarchy):
    """A Zarr v3 hierarchy at ``url`` (a local path or any fsspec URL).

    Attributes:
        writes: number of units written by this object (tests count them).
    """

    def __init__(self, url: str | os.PathLike, storage_options: dict[str, Any] | None = None):
        self.url = str(url)
        self.storage_options = storage_options
        self.local = "://" not in self.url or self.url.startswith("file://")
        self.path = Path(self.url.removeprefix("file://")) if self.local else None
        if storage_options is None and not self.local:
            storage_options = env_storage_options()
        if self.url.split("://")[0] in FRESH_LISTINGS:  # listings must show other writers' units now
            storage_options = {"use_listings_cache": False, **(storage_options or {})}
        try:
            self.root = _despite_races(lambda: zarr.open_group(self.url, mode="a", zarr_format=3,
                                                               storage_options=storage_options))
        except Exception as exc:  # noqa: BLE001 - any backend error becomes one clear message
            raise StoreError(f"cannot open the Zarr store at {self.url}: {exc}") from None
        if self.root is None:
            raise StoreError(f"cannot open the Zarr store at {self.url}: it kept changing while opened")
        self.writes = 0
        self._lock = threading.Lock()
        self._parents: set[str] = set()
        self.objects = None if self.local else ObjectUnits(self.root.store.fs, self.root.store.path)
        self.recent = RecentUnits()  # object storage: what this process just wrote or read
        self.index = UnitIndex(self)

    # ---- stage groups -------------------------------------------------------------------------
    def ensure_stage(self, stage: str, stage_hash: str, config: Any, inputs: dict[str, str] | None = None,
                     weights_sha256: str | None = None) -> None:
        """Create the stage group with its full config, inputs and library versions (once; on
        object storage checked once per process: one read)."""
        root = stage_root(stage, stage_hash)
        attrs = {"stage": stage, "stage_hash": stage_hash, "config": config, "inputs": inputs or {},
                 "weights_sha256": weights_sha256, "versions": library_versions(), "created": time.time()}
        with self._lock:
            if not self.local:
                if root not in self._parents:
                    doc = self.objects.read_doc(root)
                    if doc is None or "config" not in doc["attrs"]:
                        self.objects.put_groups([stage])
                        self.objects.write(root, {}, attrs)
                    self._parents.add(root)
                return
            group = self._require_group(root)
            if "config" not in group.attrs:
                group.attrs.update(attrs)

    # ---- units ---------------------------------------------------------------------------------
    def is_complete(self, key: str, source: str | None = None) -> bool:
        """True when the unit exists, has its marker, and (if given) was made from ``source``."""
        return self.complete_attrs(key, source) is not None

    def complete_attrs(self, key: str, source: str | None = None, listed: dict[str, set[str]] | None = None
                       ) -> dict[str, Any] | None:
        """The attributes of a complete unit (made from ``source`` if given), else None: one read
        (none on object storage when this process has it or the unit index holds it).

        ``listed``: a memo (folder -> names) shared by a caller's many checks: on object storage
        one listing of the unit's folder answers "absent" for all its missing units at once."""
        if self.local:
            attrs = fastio.read_attrs(self.path / key)
        else:
            doc = self._doc(key, listed=listed)
            attrs = None if doc is None else doc["attrs"]
        if attrs is None:
            return None
        ok = bool(attrs.get(COMPLETE)) and (source is None or attrs.get("source") == source)
        return attrs if ok else None

    def _doc(self, key: str, fresh: bool = False, listed: dict[str, set[str]] | None = None
             ) -> dict[str, Any] | None:
        """Object storage: a unit's compact document (``stores.objectio``): from this process's
        recent units, the unit index, or one read (``fresh``: always the read)."""
        attrs = None if fresh else self.recent.attrs(key)
        if attrs is not None:
            return {"attrs": attrs, "arrays": None, "recent": True}
        doc = None if fresh else self.index.doc(key)
        if doc is not None or (listed is not None and not self._listed(key, listed)):
            return doc
        return self.objects.read_doc(key)

    def _listed(self, key: str, listed: dict[str, set[str]]) -> bool:
        folder, name = key.rsplit("/", 1)
        if folder not in listed:
            listed[folder] = set(self.children(folder))
        return name in listed[folder]

    def write_unit(self, key: str, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]],
                   attrs: dict[str, Any] | None = None, source: str | None = None) -> str:
        """Write (or rewrite) a unit: ``arrays`` maps name -> (data, dimension names); marker last.
        Nothing is checked first: the marker protocol keeps readers safe."""
        parent, name = key.rsplit("/", 1)
        check_component(name, "unit name")
        self._require_parents(parent)
        meta = dict(attrs or {}, source=source)
        if self.local:
            self._write_local(parent, name, arrays, meta)
        else:
            self._write_object(key, arrays, meta)
        with self._lock:
            self.writes += 1
        return key

    def _write_object(self, key: str, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]],
                      meta: dict[str, Any]) -> None:
        self.recent.drop(key)
        if all(np.asarray(d).size for d, _ in arrays.values()):
            doc = self.objects.write(key, arrays, {**meta, COMPLETE: True})
            self.recent.put(key, doc["attrs"], {n: np.asarray(d) for n, (d, _) in arrays.items()})
            self.index.note(key, doc)
        else:  # an empty array: zarr-python's layout
            self._fill(self.root.create_group(key, overwrite=True), arrays, meta)

    def _require_group(self, path: str) -> zarr.Group:
        """``require_group`` that tolerates another process creating the same group at once."""
        group = _despite_races(lambda: self.root.require_group(path))
        return self.root[path] if group is None else group

    def _require_parents(self, parent: str) -> None:
        """Group metadata for every level of ``parent`` (once per parent and process). Each level
        is checked: a run killed between making a folder and writing its ``zarr.json`` leaves a
        folder that listing skips, which would hide every unit below it. On object storage the
        levels below a stage group are written blindly (the same bytes whoever writes them)."""
        if parent in self._parents:
            return
        with self._lock:
            parts = parent.split("/")
            named = 1 if parts[0] == INDEX_ROOT else 2  # stage groups carry attributes: never overwritten
            for i in range(1, len(parts) + 1 if self.local else named + 1):
                if self.local or "/".join(parts[:named]) not in self._parents:
                    self._require_group("/".join(parts[:i]))
            if not self.local:
                self._parents.add("/".join(parts[:named]))
                self.objects.put_groups(["/".join(parts[:i]) for i in range(named + 1, len(parts) + 1)])
            self._parents.add(parent)

    @staticmethod
    def _fill(group: zarr.Group, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]],
              meta: dict[str, Any]) -> None:
        for aname, (data, dims) in arrays.items():
            data = np.asarray(data)
            if data.ndim != len(dims):
                raise ValueError(f"array {aname}: {data.ndim} dimensions but names {dims}")
            chunks = tuple(max(1, s) for s in data.shape)
            if data.ndim == 4:  # (tile, prompt, y, x): one chunk per tile
                chunks = (1,) + chunks[1:]
            text = data.dtype.kind in "UO"  # texts (e.g. prompts): Zarr's variable-length UTF-8, a coordinate
            group.create_array(aname, shape=data.shape, dtype=str if text else data.dtype, chunks=chunks,
                               dimension_names=dims, fill_value="" if text else 0, overwrite=True)[...] = \
                data.astype(object) if text else data
        group.attrs.update(meta)
        group.attrs[COMPLETE] = True  # last

    def _write_local(self, parent: str, name: str, arrays, meta) -> None:
        final = self.path / parent / name
        if not arrays and fastio.replace_attrs(final, {**meta, COMPLETE: True}):
            return  # an attributes-only unit rewritten in place: one atomic file replace
        tmp = self.path / parent / f"{TMP_PREFIX}{name}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            if fastio.writable(arrays):  # plain files, ~20x faster than zarr-python for small units
                fastio.write_group(tmp, arrays, {**meta, COMPLETE: True})
            else:
                self._fill(zarr.open_group(LocalStore(tmp), mode="w", zarr_format=3), arrays, meta)
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.is_complete(f"{parent}/{name}"):  # lost a race to a complete unit: fine
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def read_unit(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """All arrays (as numpy) and attributes of a complete unit."""
        if not self.is_complete(key):
            raise StoreError(f"{self.url}: {key} is missing or incomplete; run `zsad precompute` first")
        if not self.local:
            doc = self._doc(key)
            if doc is not None and doc["arrays"] is None:
                doc = self._doc(key, fresh=True)
            if doc is not None and doc["arrays"] is not None:
                got = self.read_complete(key, tuple(doc["arrays"]))
                if got is not None:
                    return got
        group = self.root[key]
        return {name: arr[...] for name, arr in group.arrays()}, dict(group.attrs)

    def read_complete(self, key: str, names: tuple[str, ...], source: str | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``names``' arrays and the attributes of a complete unit (made from ``source`` if
        given), else None. On a local disk plain-layout units are read as files (``fastio``);
        on object storage with one GET per array (``objectio``), or none for a unit kept in
        ``recent``."""
        if self.local:
            got = fastio.read_group(self.path / key, names)
            attrs = got[1] if got else self.complete_attrs(key)
        else:
            got, attrs = self._read_object(key, names)
        if attrs is None or not attrs.get(COMPLETE) or (source is not None and attrs.get("source") != source):
            return None
        if got:
            return got
        group = self.root[key]
        return {n: group[n][...] for n in names}, attrs

    def _read_object(self, key: str, names: tuple[str, ...]):
        """(arrays and attrs, or None; attrs or None) of a unit on object storage. A document
        from the index that no longer matches the unit's chunks is read again from the store."""
        for fresh in (False, True):
            doc = self._doc(key, fresh)
            if doc is None:
                return None, None
            kept = self.recent.arrays(key, names) if doc.get("recent") else None
            if kept is not None:
                return (kept, doc["attrs"]), doc["attrs"]
            if doc.get("recent"):
                continue  # kept without these arrays: read them below
            if doc["arrays"] is None:
                return None, doc["attrs"]  # zarr-python's layout: read through zarr
            arrays = self.objects.read_arrays(key, doc, names)
            if arrays is not None:
                self.recent.put(key, doc["attrs"], arrays, merge=True)
                return ({n: np.array(a) for n, a in arrays.items()}, doc["attrs"]), doc["attrs"]
        return None, None

    def verify_unit(self, key: str) -> bool:
        """True when the unit is complete and, on object storage, every chunk matches the CRC-32
        its marker records (reads them all: ``precompute --verify``); local units are renamed
        into place whole."""
        return self.is_complete(key) if self.local else self.objects.verify(key)

    def read_array(self, key: str, name: str) -> np.ndarray:
        got = self.read_complete(key, (name,))
        if got is None:
            raise StoreError(f"{self.url}: {key} is missing or incomplete; run `zsad precompute` first")
        return got[0][name]

    def read_attrs(self, key: str) -> dict[str, Any]:
        attrs = self.complete_attrs(key)
        if attrs is None:
            raise StoreError(f"{self.url}: {key} is missing or incomplete")
        return attrs

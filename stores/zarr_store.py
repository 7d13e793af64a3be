"""Zarr v3 stage store. The store, not Prefect, decides what is done.

A *unit* (one image of one stage, or one class for ``clip_text``) is a group holding its
arrays and, written last, the attribute ``complete`` (with the sha256 of its source image).
A unit without it is never read and is recomputed. Where the bytes go is the backend's
business (``zsad.stores.backends``): on a local disk a unit is renamed into place whole; on object
storage it is written in place, marker last, and concurrent runs must work on disjoint units
(Zarr 3 has no locks). Array names and dimensions come from ``zsad.stores.schema``. A store opened
``read_only`` refuses every write (``StoreError``) instead of each caller carrying a flag.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import zarr

from . import schema
from .backends import COMPLETE, LocalBackend, ObjectBackend
from .groups import despite_races
from .hierarchy import Hierarchy
from .index import UnitIndex
from .keys import Unit, check_component, stage_root, unit_key
from .options import FRESH_LISTINGS, StoreError, env_storage_options, library_versions

Source = Mapping[str, str] | Callable[[Unit], str] | None


@dataclass(frozen=True)
class Pending:
    """``StageStore.pending``'s answer.

    Attributes:
        left: the units to compute, in the order asked.
        found: unit path -> attributes of the units found complete by reading them (not through
            the unit index): what a run adds to the index.
    """

    left: tuple[Unit, ...]
    found: dict[str, dict[str, Any]]


class StageStore(Hierarchy):
    """A Zarr v3 hierarchy at ``url`` (a local path or any fsspec URL).

    Attributes:
        writes: number of units written by this object (tests count them).
        read_only: every write raises ``StoreError`` (a constructor argument; pickled with the
            store, so a worker's copy refuses writes too).
        index: the unit index (``zsad.stores.index``); ``index.trusted`` False re-reads every chunk.
    """

    def __init__(self, url: str | os.PathLike, storage_options: dict[str, Any] | None = None, *,
                 read_only: bool = False):
        self.url = str(url)
        self.storage_options = storage_options
        self.read_only = read_only
        local = "://" not in self.url or self.url.startswith("file://")
        if storage_options is None and not local:
            storage_options = env_storage_options()
        if self.url.split("://")[0] in FRESH_LISTINGS:  # listings must show other writers' units now
            storage_options = {"use_listings_cache": False, **(storage_options or {})}
        try:
            self.root = despite_races(lambda: zarr.open_group(self.url, mode="a", zarr_format=3,
                                                              storage_options=storage_options))
        except Exception as exc:  # noqa: BLE001 - any backend error becomes one clear message
            raise StoreError(f"cannot open the Zarr store at {self.url}: {exc}") from None
        if self.root is None:
            raise StoreError(f"cannot open the Zarr store at {self.url}: it kept changing while opened")
        self.writes = 0
        self._lock = threading.Lock()
        self.index = UnitIndex(self, enabled_by_default=not local)
        self.backend = LocalBackend(self.root, Path(self.url.removeprefix("file://"))) if local \
            else ObjectBackend(self.root, self.index)

    def read_only_view(self) -> "StageStore":
        """The same store (its index and backend shared), refusing writes."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__, read_only=True)
        return view

    def __reduce__(self):
        """Pickled (to a Dask worker, a Prefect task), a store is its URL and its read-only
        flag; unpickled, that process's own open store (``open_store``)."""
        return reopen, (self.url, self.read_only)

    def _check_writable(self, key: str) -> None:
        if self.read_only:
            raise StoreError(f"{self.url} is opened read-only: {key} would be written; run without --read-only")

    # ---- stage groups -------------------------------------------------------------------------
    def ensure_stage(self, stage: str, stage_hash: str, config: Any, inputs: dict[str, str] | None = None,
                     weights_sha256: str | None = None) -> None:
        """Create the stage group with its full config, inputs and library versions (once; on
        object storage checked once per process: one read)."""
        root = stage_root(stage, stage_hash)
        self._check_writable(root)
        self.backend.ensure_stage(root, {"stage": stage, "stage_hash": stage_hash, "config": config,
                                         "inputs": inputs or {}, "weights_sha256": weights_sha256,
                                         "versions": library_versions(), "created": time.time()})

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
        return _complete(self.backend.attrs(key, listed), source)

    def pending(self, stage: str, stage_hash: str, units: Iterable[Unit], source: Source = None, *,
                accept: Callable[[Unit, dict[str, Any]], bool] | None = None, verify: bool = False) -> "Pending":
        """The one answer to "what is left": the ``units`` whose ``stage`` unit is missing,
        incomplete, made from another source than ``source`` gives (a mapping or a function of
        the unit; None: any source), or whose recorded facts ``accept(unit, attrs)`` refuses
        (the ``image`` stage: the file's path, size and time). The unit index answers without a
        read where it can; one listing per folder answers for its absent units. ``verify`` (or an
        untrusted index) also reads every chunk of a complete unit and checks it.

        Example: ``store.pending("tiles", h, units, {u.path: sha for ...}).left``.
        """
        units, found = list(units), {}
        want = source if callable(source) else (lambda u: None if source is None else source[u.path])
        indexed: dict[str, dict[str, dict[str, Any]]] = {}
        listed: dict[str, set[str]] = {}
        left = []
        for unit in units:
            entries = indexed.setdefault(unit.dataset, self.index.entries(stage, stage_hash, unit.dataset))
            sha, done = want(unit), entries.get(unit.path)
            if done is not None and (sha is None or done.get("source") == sha) and not verify and \
                    (accept is None or accept(unit, done)):
                continue
            key = unit_key(stage, stage_hash, unit)
            attrs = self.complete_attrs(key, sha, listed)
            if attrs is None or (accept is not None and not accept(unit, attrs)) or \
                    ((verify or not self.index.trusted) and not self.verify_unit(key)):
                left.append(unit)
            else:
                found[unit.path] = attrs
        return Pending(tuple(left), found)

    def write_unit(self, key: str, arrays: Mapping[str, Any], attrs: dict[str, Any] | None = None,
                   source: str | None = None) -> str:
        """Write (or rewrite) a unit: ``arrays`` maps name -> data (dimensions from
        ``zsad.stores.schema``) or (data, dimension names); marker last. Nothing is checked first:
        the marker protocol keeps readers safe."""
        self._check_writable(key)
        parent, name = key.rsplit("/", 1)
        check_component(name, "unit name")
        self.backend.require_parents(parent)
        self.backend.write(key, schema.with_dims(key, arrays), dict(attrs or {}, source=source))
        with self._lock:
            self.writes += 1
        return key

    def read_unit(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """All arrays (as numpy) and attributes of a complete unit."""
        if not self.is_complete(key):
            raise StoreError(f"{self.url}: {key} is missing or incomplete; run `zsad precompute` first")
        names = self.backend.array_names(key)
        got = self.read_complete(key, names) if names is not None else None
        if got is not None:
            return got
        group = self.root[key]
        return {name: arr[...] for name, arr in group.arrays()}, dict(group.attrs)

    def read_complete(self, key: str, names: tuple[str, ...], source: str | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``names``' arrays and the attributes of a complete unit (made from ``source`` if
        given), else None: plain files on a local disk, one GET per array on object storage (none
        for a unit this process keeps), zarr-python for other layouts."""
        got, attrs = self.backend.read(key, names)
        if _complete(attrs, source) is None:
            return None
        if got is not None:
            return got, attrs
        group = self.root[key]
        return {n: group[n][...] for n in names}, attrs

    def verify_unit(self, key: str) -> bool:
        """True when the unit is complete and, on object storage, every chunk matches the CRC-32
        its marker records (reads them all: ``precompute --verify``); local units are renamed
        into place whole."""
        return self.backend.verify(key)

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


def _complete(attrs: dict[str, Any] | None, source: str | None) -> dict[str, Any] | None:
    """``attrs`` when they carry the marker (and ``source``, if given), else None."""
    ok = attrs is not None and bool(attrs.get(COMPLETE)) and (source is None or attrs.get("source") == source)
    return attrs if ok else None


# The stores this process has open: one ``StageStore`` per URL, shared by every task and thread
# (its unit index and backend caches are per process), and its read-only view.
_STORES: dict[tuple[str, bool], StageStore] = {}
_LOCK = threading.RLock()


def open_store(url: str, *, read_only: bool = False) -> StageStore:
    """This process's store at ``url`` (opened on first use); ``read_only``: its view that
    refuses writes, sharing the store's index and backend."""
    with _LOCK:
        if (url, read_only) not in _STORES:
            _STORES[(url, read_only)] = open_store(url).read_only_view() if read_only else StageStore(url)
        return _STORES[(url, read_only)]


def reopen(url: str, read_only: bool) -> StageStore:
    """``open_store`` with positional arguments: what an unpickled ``StageStore`` calls."""
    return open_store(url, read_only=read_only)


def opened() -> list[StageStore]:
    with _LOCK:
        return list(_STORES.values())


def forget_stores() -> None:
    """Close nothing, forget everything: the next ``open_store`` opens afresh (tests)."""
    with _LOCK:
        _STORES.clear()

"""Zarr v3 stage store. The store, not Prefect, decides what is done.

A *unit* (one image of one stage, or one class for ``clip_text``) is a group holding its
arrays and, written last, the attribute ``complete`` (with the sha256 of its source image).
A unit without it is never read and is recomputed. On a local disk a unit is written into a
hidden sibling folder and renamed into place, so readers and concurrent runs never see half
a unit; on other fsspec stores (object storage) it is written in place, marker last, and
concurrent runs must work on disjoint units (Zarr 3 has no locks). Arrays are not sharded.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.storage import LocalStore

from . import fastio
from .index import INDEX_ROOT, UnitIndex
from .keys import Unit, check_component, stage_root
from .options import FRESH_LISTINGS, StoreError, env_storage_options, library_versions
from .temps import _HOST, TMP_PREFIX, sweep_temp_folders

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


async def _list_dir(store, prefix: str) -> list[str]:
    return [name async for name in store.list_dir(prefix)]


class StageStore:
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
        self.index = UnitIndex(self)

    # ---- stage groups -------------------------------------------------------------------------
    def ensure_stage(self, stage: str, stage_hash: str, config: Any, inputs: dict[str, str] | None = None,
                     weights_sha256: str | None = None) -> None:
        """Create the stage group with its full config, inputs and library versions (once)."""
        root = stage_root(stage, stage_hash)
        with self._lock:
            group = self._require_group(root)
            if "config" not in group.attrs:
                group.attrs.update({"stage": stage, "stage_hash": stage_hash, "config": config,
                                    "inputs": inputs or {}, "weights_sha256": weights_sha256,
                                    "versions": library_versions(), "created": time.time()})

    # ---- units ---------------------------------------------------------------------------------
    def is_complete(self, key: str, source: str | None = None) -> bool:
        """True when the unit exists, has its marker, and (if given) was made from ``source``."""
        return self.complete_attrs(key, source) is not None

    def complete_attrs(self, key: str, source: str | None = None) -> dict[str, Any] | None:
        """The attributes of a complete unit (made from ``source`` if given), else None: one read."""
        try:
            attrs = fastio.read_attrs(self.path / key) if self.local else dict(self.root[key].attrs)
        except Exception:  # noqa: BLE001 - absent or half-written metadata both mean "not done"
            return None
        if attrs is None:
            return None
        ok = bool(attrs.get(COMPLETE)) and (source is None or attrs.get("source") == source)
        return attrs if ok else None

    def write_unit(self, key: str, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]],
                   attrs: dict[str, Any] | None = None, source: str | None = None, replace: bool = False) -> str:
        """Write a unit: ``arrays`` maps name -> (data, dimension names); marker last.

        On object storage (written in place) a unit that another writer completed from the same
        ``source`` while this one was computing is kept, not overwritten (``replace`` forces it):
        a teammate's overlapping run then costs work, never a window where a finished unit reads
        as incomplete or a half-replaced one.
        """
        if not self.local and source is not None and not replace and self.is_complete(key, source):
            return key
        self._write(key, arrays, dict(attrs or {}, source=source))
        with self._lock:
            self.writes += 1
        return key

    def _write(self, key: str, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]], meta: dict[str, Any]) -> None:
        parent, name = key.rsplit("/", 1)
        check_component(name, "unit name")
        self._require_parents(parent)
        if self.local:
            self._write_local(parent, name, arrays, meta)
        else:
            group = self.root.create_group(key, overwrite=True)
            self._fill(group, arrays, meta)

    def _require_group(self, path: str) -> zarr.Group:
        """``require_group`` that tolerates another process creating the same group at once."""
        group = _despite_races(lambda: self.root.require_group(path))
        return self.root[path] if group is None else group

    def _require_parents(self, parent: str) -> None:
        """Group metadata for every level of ``parent`` (once per parent and process). Each level
        is checked: a run killed between making a folder and writing its ``zarr.json`` leaves a
        folder that listing skips, which would hide every unit below it."""
        if parent in self._parents:
            return
        with self._lock:
            parts = parent.split("/")
            for i in range(1, len(parts) + 1):
                self._require_group("/".join(parts[:i]))
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
        group = self.root[key]
        return {name: arr[...] for name, arr in group.arrays()}, dict(group.attrs)

    def read_complete(self, key: str, names: tuple[str, ...], source: str | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``names``' arrays and the attributes of a complete unit (made from ``source`` if
        given), else None. On a local disk plain-layout units are read as files (``fastio``)."""
        got = fastio.read_group(self.path / key, names) if self.local else None
        attrs = got[1] if got else self.complete_attrs(key)
        if attrs is None or not attrs.get(COMPLETE) or (source is not None and attrs.get("source") != source):
            return None
        if got:
            return got
        group = self.root[key]
        return {n: group[n][...] for n in names}, attrs

    def read_array(self, key: str, name: str) -> np.ndarray:
        if not self.is_complete(key):
            raise StoreError(f"{self.url}: {key} is missing or incomplete; run `zsad precompute` first")
        return self.root[key][name][...]

    def read_attrs(self, key: str) -> dict[str, Any]:
        attrs = self.complete_attrs(key)
        if attrs is None:
            raise StoreError(f"{self.url}: {key} is missing or incomplete")
        return attrs

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
            self._write(key, {}, attrs)  # not a unit: not counted in ``writes``
            return
        self._require_parents(key.rsplit("/", 1)[0])
        self.root.create_group(key, attributes=attrs, overwrite=True)

    def delete(self, key: str) -> None:
        """Delete a unit or group; deleting a stage group (``stage/hash``) deletes its index too."""
        parts = key.split("/")
        if len(parts) == 2 and parts[0] != INDEX_ROOT:
            self.delete(f"{INDEX_ROOT}/{key}")
            self.index.forget(*parts)
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
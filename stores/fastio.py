"""Plain-file reads and writes of small Zarr v3 units on a local disk, without zarr-python's
per-array machinery (its event loop, codec pipeline and metadata parsing cost ~0.5-2 ms per
array; a re-aggregation sweep reads a few arrays and writes one unit per image and variant).

What is written is ordinary Zarr v3 in the plain layout of ``zsad.stores.layout``: a group
``zarr.json`` with the attributes, and per array a ``zarr.json`` and its one chunk;
``zarr.open_group`` and xarray read it. What is read here is only that layout: anything else
(several chunks, other codecs, texts) answers ``None`` and the caller uses zarr-python.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .layout import ArraySpec, encode_array, group_document

_TMP = ".zarr.json."  # an in-place rewrite's temp file, beside the group's zarr.json


def writable(arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]]) -> bool:
    """True when every array fits the plain layout (numeric, non-empty, at most 3 dimensions)."""
    for data, dims in arrays.values():
        data = np.asarray(data)
        if data.dtype.kind not in "biuf" or data.size == 0 or data.ndim > 3 or data.ndim != len(dims):
            return False
    return True


def write_group(folder: Path, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]], attrs: dict[str, Any]) -> None:
    """Write a unit into ``folder`` (a fresh temp folder the caller renames into place)."""
    folder.mkdir(parents=True)
    for name, (data, dims) in arrays.items():
        spec, chunk = encode_array(data, dims)
        path = folder / name / spec.chunk_key
        path.parent.mkdir(parents=True)
        path.write_bytes(chunk)
        (folder / name / "zarr.json").write_text(json.dumps(spec.meta()))
    (folder / "zarr.json").write_bytes(group_document(attrs))


def replace_attrs(folder: Path, attrs: dict[str, Any]) -> bool:
    """Rewrite an existing attributes-only group (its folder holds only ``zarr.json``) with one
    atomic ``os.replace``; False (nothing done) when it is absent or holds anything else."""
    try:
        if [n for n in os.listdir(folder) if not n.startswith(_TMP)] != ["zarr.json"]:  # others' temp files aside
            return False
    except OSError:
        return False
    tmp = folder / f"{_TMP}{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_bytes(group_document(attrs))
        os.replace(tmp, folder / "zarr.json")
    except FileNotFoundError:  # another writer replaced the whole unit meanwhile: write it the usual way
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def read_attrs(folder: Path) -> dict[str, Any] | None:
    """A group's attributes, or None when it has no readable metadata."""
    try:
        meta = json.loads((folder / "zarr.json").read_bytes())
    except (OSError, ValueError):
        return None
    return meta.get("attributes", {}) if meta.get("node_type") == "group" else None


def read_array(folder: Path) -> np.ndarray | None:
    """An array in the plain layout (``zsad.stores.layout``), else None."""
    try:
        spec = ArraySpec.from_meta(json.loads((folder / "zarr.json").read_bytes()))
    except (OSError, ValueError):
        return None
    if spec is None or spec.text:
        return None
    try:
        return spec.decode((folder / spec.chunk_key).read_bytes())
    except FileNotFoundError:  # a chunk never written holds the fill value
        return spec.decode(None)


def read_group(folder: Path, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """``names``' arrays and the attributes of a unit, or None when any part is not the plain
    layout or missing (the caller then reads through zarr, which also says what is wrong)."""
    attrs = read_attrs(folder)
    if attrs is None:
        return None
    arrays = {}
    for name in names:
        arr = read_array(folder / name)
        if arr is None:
            return None
        arrays[name] = arr
    return arrays, attrs

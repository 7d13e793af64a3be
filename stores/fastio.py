"""Plain-file reads and writes of small Zarr v3 units on a local disk, without zarr-python's
per-array machinery (its event loop, codec pipeline and metadata parsing cost ~0.5-2 ms per
array; a re-aggregation sweep reads a few arrays and writes one unit per image and variant).

What is written is ordinary Zarr v3: a group ``zarr.json`` with the attributes, and per array
a ``zarr.json`` (one regular chunk, ``bytes`` little-endian, then ``zstd`` when larger than
``COMPRESS_ABOVE`` bytes) and its chunk ``c/0/.../0``; ``zarr.open_group`` and xarray read it.
What is read here is only that layout: anything else (several chunks, other codecs, texts)
answers ``None`` and the caller uses zarr-python.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

COMPRESS_ABOVE = 4096  # bytes: smaller chunks are stored raw (zstd's frame costs more than it saves)
_ZSTD = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}
_TMP = ".zarr.json."  # an in-place rewrite's temp file, beside the group's zarr.json


def _zstd():
    from numcodecs import Zstd  # zarr's own dependency
    return Zstd(level=0)


def writable(arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]]) -> bool:
    """True when every array fits the plain layout (numeric, non-empty, at most 3 dimensions)."""
    for data, dims in arrays.values():
        data = np.asarray(data)
        if data.dtype.kind not in "biuf" or data.size == 0 or data.ndim > 3 or data.ndim != len(dims):
            return False
    return True


def _array_meta(data: np.ndarray, dims: tuple[str, ...], compressed: bool) -> dict[str, Any]:
    fill = False if data.dtype.kind == "b" else (0.0 if data.dtype.kind == "f" else 0)
    return {"shape": list(data.shape), "data_type": data.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(data.shape)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill, "codecs": [_BYTES, _ZSTD] if compressed else [_BYTES], "attributes": {},
            "dimension_names": list(dims), "zarr_format": 3, "node_type": "array", "storage_transformers": []}


def _group_json(attrs: dict[str, Any]) -> str:
    return json.dumps({"attributes": attrs, "zarr_format": 3, "node_type": "group"})


def write_group(folder: Path, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]], attrs: dict[str, Any]) -> None:
    """Write a unit into ``folder`` (a fresh temp folder the caller renames into place)."""
    folder.mkdir(parents=True)
    for name, (data, dims) in arrays.items():
        data = np.ascontiguousarray(data)
        raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        compressed = len(raw) > COMPRESS_ABOVE
        chunk_dir = folder / name / "c" / Path(*(["0"] * (data.ndim - 1))) if data.ndim > 1 else folder / name / "c"
        chunk_dir.mkdir(parents=True)
        (chunk_dir / "0").write_bytes(bytes(_zstd().encode(raw)) if compressed else raw)
        (folder / name / "zarr.json").write_text(json.dumps(_array_meta(data, dims, compressed)))
    (folder / "zarr.json").write_text(_group_json(attrs))


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
        tmp.write_text(_group_json(attrs))
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
    """An array in the plain layout (one chunk; ``bytes`` then optionally ``zstd``), else None."""
    try:
        meta = json.loads((folder / "zarr.json").read_bytes())
        shape, codecs = tuple(meta["shape"]), meta["codecs"]
        if (meta.get("node_type") != "array" or tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]) != shape
                or meta["chunk_key_encoding"]["configuration"].get("separator") != "/" or not shape
                or codecs[0] != _BYTES or len(codecs) > 2 or (len(codecs) == 2 and codecs[1]["name"] != "zstd")
                or meta.get("storage_transformers")):
            return None
        dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        path = folder / "c" / os.path.join(*(["0"] * len(shape)))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    try:
        raw = path.read_bytes()
    except FileNotFoundError:  # a chunk never written holds the fill value
        return np.full(shape, meta["fill_value"], dtype)
    if len(codecs) == 2:
        raw = _zstd().decode(raw)
    return np.frombuffer(raw, dtype).reshape(shape).astype(dtype.newbyteorder("="))  # a writable copy, as zarr gives


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

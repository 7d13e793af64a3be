"""The plain Zarr v3 layout of a small unit's arrays, as bytes: one regular chunk per array,
``bytes`` little-endian (texts: ``vlen-utf8``), then ``zstd`` when larger than
``COMPRESS_ABOVE`` bytes. ``zsad.stores.fastio`` writes it as local files, ``zsad.stores.objectio`` as
objects; zarr-python and xarray read both.

Worked example (pure bytes, no store)::

    >>> spec, raw = encode_array(np.arange(3, dtype=np.int16), ("t",))
    >>> spec.data_type, spec.shape, spec.chunk_key, raw
    ('int16', (3,), 'c/0', b'\\x00\\x00\\x01\\x00\\x02\\x00')
    >>> spec.decode(raw).tolist()
    [0, 1, 2]
    >>> ArraySpec.from_meta(spec.meta()) == spec
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

COMPRESS_ABOVE = 4096  # bytes: smaller chunks are stored raw (zstd's frame costs more than it saves)
_ZSTD = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}
_VLEN = {"name": "vlen-utf8", "configuration": {}}


def _zstd():
    from numcodecs import Zstd  # zarr's own dependency
    return Zstd(level=0)


def _vlen():
    from numcodecs import VLenUTF8
    return VLenUTF8()


@dataclass(frozen=True)
class ArraySpec:
    """What a reader needs to decode one plain-layout array: ``data_type`` (a numpy name or
    ``"string"``), ``shape``, ``dims`` (dimension names) and whether its chunk is zstd-compressed."""

    data_type: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    compressed: bool

    @property
    def text(self) -> bool:
        return self.data_type == "string"

    @property
    def chunk_key(self) -> str:
        """The chunk's key below the array: ``c/0`` for 1-D, ``c/0/0`` for 2-D, ..."""
        return "/".join(["c"] + ["0"] * len(self.shape))

    def meta(self) -> dict[str, Any]:
        """The array's Zarr v3 ``zarr.json`` document."""
        kind = self.data_type[0] if not self.text else "U"
        fill = "" if self.text else (False if kind == "b" else (0.0 if kind == "f" else 0))
        codecs = ([_VLEN] if self.text else [_BYTES]) + ([_ZSTD] if self.compressed else [])
        return {"shape": list(self.shape), "data_type": self.data_type,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(self.shape)}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill, "codecs": codecs, "attributes": {}, "dimension_names": list(self.dims),
                "zarr_format": 3, "node_type": "array", "storage_transformers": []}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "ArraySpec | None":
        """The spec of an array's metadata document, or None when it is not the plain layout."""
        try:
            shape, codecs = tuple(meta["shape"]), [c["name"] for c in meta["codecs"]]
            first = "vlen-utf8" if meta["data_type"] == "string" else "bytes"
            if (meta.get("node_type") != "array" or not shape
                    or tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]) != shape
                    or meta["chunk_key_encoding"]["configuration"].get("separator") != "/"
                    or codecs not in ([first], [first, "zstd"]) or meta.get("storage_transformers")
                    or (first == "bytes" and meta["codecs"][0].get("configuration", {}).get("endian") == "big")):
                return None
            return cls(meta["data_type"], shape, tuple(meta.get("dimension_names") or ()), len(codecs) == 2)
        except (KeyError, TypeError, IndexError, AttributeError):
            return None

    def compact(self) -> list:
        """A short JSON form (unit index records): ``[data_type, shape, dims, compressed]``."""
        return [self.data_type, list(self.shape), list(self.dims), self.compressed]

    @classmethod
    def from_compact(cls, value: list) -> "ArraySpec":
        return cls(value[0], tuple(value[1]), tuple(value[2]), bool(value[3]))

    def decode(self, raw: bytes | None) -> np.ndarray:
        """The array from its chunk's bytes (None: a chunk never written, all fill value)."""
        if raw is None:
            return np.full(self.shape, "" if self.text else 0, dtype=object if self.text else self.data_type)
        if self.compressed:
            raw = _zstd().decode(raw)
        if self.text:
            return _vlen().decode(raw).reshape(self.shape).astype(np.dtypes.StringDType())  # as zarr-python gives
        dtype = np.dtype(self.data_type).newbyteorder("<")
        return np.frombuffer(raw, dtype).reshape(self.shape).astype(dtype.newbyteorder("="))  # writable copy


def encode_array(data: np.ndarray, dims: tuple[str, ...]) -> tuple[ArraySpec, bytes]:
    """An array's spec and chunk bytes. Numbers, booleans and texts; at least one element."""
    data = np.ascontiguousarray(data)
    if data.ndim != len(dims):
        raise ValueError(f"an array of {data.ndim} dimensions was given {len(dims)} names {dims}")
    if data.size == 0:
        raise ValueError("the plain layout holds non-empty arrays only (an empty one goes through zarr-python)")
    if data.dtype.kind in "UOT":
        raw = bytes(_vlen().encode(np.asarray(data, dtype=object).ravel()))
        kind = "string"
    elif data.dtype.kind in "biuf":
        raw, kind = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes(), data.dtype.name
    else:
        raise ValueError(f"dtype {data.dtype} has no plain-layout encoding")
    compressed = len(raw) > COMPRESS_ABOVE
    return ArraySpec(kind, tuple(data.shape), tuple(dims), compressed), \
        (bytes(_zstd().encode(raw)) if compressed else raw)


def group_document(attrs: dict[str, Any], specs: dict[str, ArraySpec] | None = None) -> bytes:
    """A group's ``zarr.json``; with ``specs``, its arrays' metadata inline (Zarr's consolidated
    metadata), so that one read of it says how to decode every chunk."""
    doc: dict[str, Any] = {"attributes": attrs, "zarr_format": 3, "node_type": "group"}
    if specs:
        doc["consolidated_metadata"] = {"kind": "inline", "must_understand": False,
                                        "metadata": {n: s.meta() for n, s in specs.items()}}
    return json.dumps(doc).encode()


def inline_specs(doc: dict[str, Any]) -> dict[str, ArraySpec] | None:
    """The plain-layout specs a group document holds inline, or None (none, or not plain)."""
    meta = (doc.get("consolidated_metadata") or {}).get("metadata")
    if not meta:
        return None
    specs = {name: ArraySpec.from_meta(m) for name, m in meta.items()}
    return None if any(s is None for s in specs.values()) else specs

"""Units on object storage in as few requests as the format allows.

A unit is written as its arrays' objects (per array: its ``zarr.json`` and its one chunk, all
PUT concurrently), then its group ``zarr.json`` (one PUT, last): the completeness marker,
holding the attributes and every array's metadata inline (Zarr's consolidated metadata) with
each chunk's CRC-32. No existence check, no delete, no listing: a unit rewritten in place is
safe because readers check it: a reader gets the group document (one GET, or none when the
unit index already holds it) and every chunk (one GET each, concurrently), and a chunk whose
CRC-32 is not the document's (a rewrite under way, a torn object) makes the unit read as
incomplete. Retries of resets, timeouts and 5xx/SlowDown answers are the backend's (s3fs/
botocore: bounded, with backoff, per request).

``doc`` below is the compact document also kept in the unit index: ``{"attrs": {...},
"arrays": {name: [data_type, shape, dims, compressed, crc32]}}``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import zlib
from typing import Any

import numpy as np
from zarr.core.sync import sync

from .layout import ArraySpec, encode_array, group_document, inline_specs

EMPTY_GROUP = group_document({})


def _one_get(fs: Any) -> dict[str, Any]:
    """``_cat_file`` options for a single GET (s3fs asks for the size first, a HEAD, when it
    may split a read across connections)."""
    return {"max_concurrency": 1} if "max_concurrency" in inspect.signature(fs._cat_file).parameters else {}


async def _get_all(fs: Any, paths: list[str], options: dict[str, Any]) -> list:
    """Each object's bytes (or the exception), one GET each, concurrently (no listing or HEAD)."""
    return await asyncio.gather(*(fs._cat_file(p, **options) for p in paths), return_exceptions=True)


class ObjectUnits:
    """Unit reads and writes below ``root`` (a bucket path) of an asynchronous fsspec ``fs``."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs, self.root = fs, root.rstrip("/")
        self._get = _one_get(fs)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def write(self, key: str, arrays: dict[str, tuple[np.ndarray, tuple[str, ...]]], attrs: dict[str, Any]
              ) -> dict[str, Any]:
        """Write a unit: arrays first (concurrently), the group document last. Returns its doc."""
        objects, specs, crcs = {}, {}, {}
        for name, (data, dims) in arrays.items():
            spec, chunk = encode_array(np.asarray(data), tuple(dims))
            specs[name], crcs[name] = spec, zlib.crc32(chunk)
            meta = spec.meta()
            objects[f"{self._path(key)}/{name}/{spec.chunk_key}"] = chunk
            objects[f"{self._path(key)}/{name}/zarr.json"] = json.dumps(meta).encode()
        if objects:
            sync(self.fs._pipe(objects))
        group = group_document({**attrs, "chunk_crc32": crcs} if crcs else attrs, specs)
        sync(self.fs._pipe_file(f"{self._path(key)}/zarr.json", group))
        return {"attrs": attrs, "arrays": {n: s.compact() + [crcs[n]] for n, s in specs.items()}}

    def put_groups(self, keys: list[str]) -> None:
        """Empty group documents at ``keys`` (levels of the hierarchy), concurrently, blindly:
        the same bytes whoever writes them."""
        if keys:
            sync(self.fs._pipe({f"{self._path(k)}/zarr.json": EMPTY_GROUP for k in keys}))

    def read_doc(self, key: str) -> dict[str, Any] | None:
        """The unit's compact doc from its group ``zarr.json`` (one GET); None when it is
        absent, unreadable or not a group. A unit whose arrays are not the plain layout (written
        by zarr-python) has ``arrays`` None: read it through zarr."""
        try:
            doc = json.loads(sync(self.fs._cat_file(f"{self._path(key)}/zarr.json", **self._get)))
        except (FileNotFoundError, ValueError):
            return None
        if doc.get("node_type") != "group":
            return None
        attrs = dict(doc.get("attributes") or {})
        crcs = attrs.pop("chunk_crc32", {})
        specs = inline_specs(doc)
        arrays = None if specs is None or set(specs) != set(crcs) else \
            {n: s.compact() + [crcs[n]] for n, s in specs.items()}
        return {"attrs": attrs, "arrays": arrays}

    def read_arrays(self, key: str, doc: dict[str, Any], names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """``names``' arrays of a unit whose doc is ``doc`` (one GET per chunk, concurrently),
        or None when one is missing or its CRC-32 differs (the unit is being rewritten)."""
        wanted = {}
        for name in names:
            compact = (doc.get("arrays") or {}).get(name)
            if compact is None:
                return None
            wanted[name] = (ArraySpec.from_compact(compact[:4]), compact[4])
        if not wanted:
            return {}
        paths = {name: f"{self._path(key)}/{name}/{spec.chunk_key}" for name, (spec, _) in wanted.items()}
        got = dict(zip(paths, sync(_get_all(self.fs, list(paths.values()), self._get))))
        out = {}
        for name, (spec, crc) in wanted.items():
            raw = got[name]
            if not isinstance(raw, bytes) or zlib.crc32(raw) != crc:
                return None
            out[name] = spec.decode(raw)
        return out

    def verify(self, key: str) -> bool:
        """The unit is complete and every chunk matches its CRC-32 (reads them all); a unit in
        zarr-python's layout has no checksums: complete is enough."""
        doc = self.read_doc(key)
        if doc is None or not doc["attrs"].get("complete"):
            return False
        return doc["arrays"] is None or self.read_arrays(key, doc, tuple(doc["arrays"])) is not None

"""Stage ``image``: register each sample (path, sha256, size, label, mask) in the store."""

from __future__ import annotations

import os
from typing import Any

from stores import Unit, unit_key
from zsad.datasets import load_image
from zsad.datasets.base import file_sha256

from .common import zsad_task
from .decoded import remember
from .runtime import open_store, unit_error


INDEXED = ("path", "size", "mtime_ns")  # what a skip compares, besides the source sha256


def _unchanged(record: dict[str, Any] | None, path: str) -> bool:
    if record is None or record.get("path") != str(path):
        return False
    st = os.stat(path)
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def _indexed_unchanged(store, key: str, path: str) -> bool:
    """The unit index (object storage) records ``key``'s image as this file, unchanged."""
    _, image_hash, unit_path = key.split("/", 2)
    dataset = unit_path.split("/", 1)[0]
    return _unchanged(store.index.entries("image", image_hash, dataset).get(unit_path), path)


def registered(store, key: str, path: str) -> bool:
    """True when ``key`` holds a complete record of ``path`` with its current size and mtime
    (the file has not changed since it was registered; its content is not re-read). The index
    answers without a read when it can."""
    return _indexed_unchanged(store, key, path) or _unchanged(store.complete_attrs(key), path)


def _register(store, image_hash: str, dataset: str, s: dict[str, Any], listed: dict[str, set[str]]
              ) -> dict[str, Any] | None:
    """Register one sample; returns its index facts when they were not already indexed.
    ``listed``: the folder listings memo of ``StageStore.complete_attrs``."""
    unit = Unit(dataset, s["class_name"], s["split"], s["image_id"])
    key = unit_key("image", image_hash, unit)
    if _indexed_unchanged(store, key, s["path"]):
        return None
    old = store.complete_attrs(key, listed=listed)
    if _unchanged(old, s["path"]):
        return {"source": old["sha256"], **{k: old[k] for k in INDEXED}}
    st = os.stat(s["path"])
    image = load_image(s["path"])  # fails with the file's name if unreadable
    h, w = image.shape[:2]
    sha = file_sha256(s["path"])
    remember(s["path"], sha, image)  # the shard's stages decode it no more
    attrs = dict(s, sha256=sha, height=h, width=w, size=st.st_size, mtime_ns=st.st_mtime_ns)
    store.write_unit(key, {}, attrs, source=sha)  # a new size/mtime is news even with the same bytes
    return {"source": sha, **{k: attrs[k] for k in INDEXED}}


@zsad_task("image")
def register_images(store_url: str, image_hash: str, samples: list[dict[str, Any]], dataset: str
                    ) -> dict[str, list]:
    """Write one image unit per sample; an unchanged file (same size and mtime) is not re-read.

    An unreadable file is recorded (path and reason) and the others are registered:
    ``{"done": [unit paths], "failed": [error records]}``.
    """
    store = open_store(store_url)
    done, failed, facts, listed = [], [], {}, {}
    for s in samples:
        path = f"{dataset}/{s['class_name']}/{s['split']}/{s['image_id']}"
        try:
            new = _register(store, image_hash, dataset, s, listed)
            done.append(path)
            if new is not None:
                facts[path] = new
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            failed.append(unit_error(path, "image", s["path"], exc))
    store.index.add("image", image_hash, dataset, facts)
    return {"done": done, "failed": failed}

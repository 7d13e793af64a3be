"""Stage ``image``: register each sample (path, sha256, size, label, mask) in the store."""

from __future__ import annotations

import os
from typing import Any

from stores import Unit, unit_key
from zsad.datasets import load_image
from zsad.datasets.base import file_sha256

from .common import zsad_task
from .runtime import open_store


@zsad_task("image")
def register_images(store_url: str, image_hash: str, samples: list[dict[str, Any]], dataset: str) -> list[str]:
    """Write one image unit per sample; an unchanged file (same size and mtime) is not re-read."""
    store = open_store(store_url)
    keys = []
    for s in samples:
        unit = Unit(dataset, s["class_name"], s["split"], s["image_id"])
        key = unit_key("image", image_hash, unit)
        st = os.stat(s["path"])
        if store.is_complete(key):
            old = store.read_attrs(key)
            if old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old["path"] == s["path"]:
                keys.append(key)
                continue
        h, w = load_image(s["path"]).shape[:2]  # fails with the file's name if unreadable
        sha = file_sha256(s["path"])
        attrs = dict(s, sha256=sha, height=h, width=w, size=st.st_size, mtime_ns=st.st_mtime_ns)
        keys.append(store.write_unit(key, {}, attrs, source=sha))
    return keys

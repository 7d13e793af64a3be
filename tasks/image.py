"""Stage ``image``: register each sample (path, sha256, size, label, mask) in the store."""

from __future__ import annotations

import os
from typing import Any

from stores import Unit, unit_key
from zsad.datasets import load_image
from zsad.datasets.base import file_sha256

from .common import zsad_task
from .runtime import open_store, unit_error


def registered(store, key: str, path: str) -> bool:
    """True when ``key`` holds a complete record of ``path`` with its current size and mtime
    (the file has not changed since it was registered; its content is not re-read)."""
    old = store.complete_attrs(key)
    if old is None or old.get("path") != str(path):
        return False
    st = os.stat(path)
    return old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns


def _register(store, image_hash: str, dataset: str, s: dict[str, Any]) -> None:
    unit = Unit(dataset, s["class_name"], s["split"], s["image_id"])
    key = unit_key("image", image_hash, unit)
    if registered(store, key, s["path"]):
        return
    st = os.stat(s["path"])
    h, w = load_image(s["path"]).shape[:2]  # fails with the file's name if unreadable
    sha = file_sha256(s["path"])
    store.write_unit(key, {}, dict(s, sha256=sha, height=h, width=w, size=st.st_size, mtime_ns=st.st_mtime_ns),
                     source=sha)


@zsad_task("image")
def register_images(store_url: str, image_hash: str, samples: list[dict[str, Any]], dataset: str
                    ) -> dict[str, list]:
    """Write one image unit per sample; an unchanged file (same size and mtime) is not re-read.

    An unreadable file is recorded (path and reason) and the others are registered:
    ``{"done": [unit paths], "failed": [error records]}``.
    """
    store = open_store(store_url)
    done, failed = [], []
    for s in samples:
        path = f"{dataset}/{s['class_name']}/{s['split']}/{s['image_id']}"
        try:
            _register(store, image_hash, dataset, s)
            done.append(path)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            failed.append(unit_error(path, "image", s["path"], exc))
    return {"done": done, "failed": failed}

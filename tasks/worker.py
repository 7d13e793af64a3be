"""What a worker process keeps between tasks: its open stores (``zsad.stores.open_store``), the
models it loaded (once per process), the run it last worked for, and a shard's image records.

Nothing here starts a thread or loads a model at import; a Dask worker process lives across
runs and shards, so each of those starts by forgetting what may have changed (``begin_run``,
``start_shard``).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from zsad.config import ModelSpec
from zsad.stores import StageStore, Unit, open_store, unit_key
from zsad.stores.opened import forget_stores, opened

from .decoded import start_shard as forget_images

_MODELS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
MODEL_LOADS: collections.Counter = collections.Counter()  # family -> number of loads in this process
_RUNS: dict[str, str] = {}  # store URL -> the run this process last worked for
_IMAGE_RECORDS: dict[tuple[str, str], dict[str, Any]] = {}  # the shard's image records, read once


def begin_run(store: StageStore, run_id: str, verify: bool = False) -> StageStore:
    """``store``, its unit index forgotten when ``run_id`` is new to this process (a Dask worker
    lives across runs; others may have added or pruned units since). ``verify``: read every
    unit's marker instead of trusting the index."""
    with _LOCK:
        if run_id and _RUNS.get(store.url) != run_id:
            store.index.forget()
            store.index.trusted = not verify
            _RUNS[store.url] = run_id
    return store


def get_model(spec: ModelSpec, **kwargs: Any) -> Any:
    """The model for ``spec``, loaded on first use in this process and kept."""
    key = (spec, tuple(sorted(kwargs.items())))
    with _LOCK:
        if key not in _MODELS:
            from zsad.models import load_model  # imported lazily: aggregate never gets here
            _MODELS[key] = load_model(spec, **kwargs)
            MODEL_LOADS[spec.family] += 1
        return _MODELS[key]


def image_source(store: StageStore, image_hash: str, unit: Unit) -> tuple[str, dict[str, Any]]:
    """(sha256, attrs) of a registered image: read once per shard (the shard's stages all ask)."""
    key = (store.url, unit_key("image", image_hash, unit))
    attrs = _IMAGE_RECORDS.get(key)
    if attrs is None:
        attrs = _IMAGE_RECORDS[key] = store.read_attrs(key[1])
    return attrs["sha256"], attrs


def start_shard() -> None:
    """A new shard: forget the previous one's image records, decoded images and kept units."""
    _IMAGE_RECORDS.clear()
    forget_images()
    for store in opened():
        store.backend.drop_kept()


__all__ = ["MODEL_LOADS", "begin_run", "forget_stores", "get_model", "image_source", "open_store", "start_shard"]

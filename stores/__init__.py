"""``zsad.stores``: the Zarr stage store. ``StageStore`` (``zarr_store``; its hierarchy and
records in ``hierarchy``) decides what is complete and what is left (``pending``); opened with
``read_only=True`` it refuses every write, and a pickled store (to a Dask worker, a Prefect task)
is its URL and that flag, reopened there as that process's own (``opened.open_store``). Where
the bytes go is a backend's (``backends``: a local disk, written and renamed into place; object
storage, written in place with the marker last). Also: the key grammar and ``Unit`` (``keys``:
the only module that builds or splits keys), every stage's arrays and dimensions (``schema``,
from ``zsad.stages``), the plain array layout (``layout``) as local files (``fastio``) or few
objects (``objectio``), units kept in memory (``recent``), the unit index (``index``) and
xarray views (``views``). The store classes import on first use: ``Unit`` costs no Zarr import.
The local S3 server and the fault-injecting proxy of the tests live in ``tests/``."""

from typing import Any

from .keys import Unit, class_key, dataset_key, stage_root, threshold_key, unit_key

_LAZY = {"StageStore": "zarr_store", "StoreError": "options", "open_store": "opened", "forget_stores": "opened"}


def __getattr__(name: str) -> Any:
    """The store classes, imported on first use: the key grammar (``Unit``) costs no Zarr import
    (the command line's parser and the requests use it)."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Unit",
    "class_key",
    "dataset_key",
    "stage_root",
    "threshold_key",
    "unit_key",
    "StageStore",
    "StoreError",
    "open_store",
    "forget_stores",
]

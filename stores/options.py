"""Where a store is and how to reach it: fsspec options from the environment, library versions."""

from __future__ import annotations

import functools
import json
import os
from typing import Any


class StoreError(ValueError):
    """A key is missing or incomplete, or the store location is unusable."""


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries a stage's output depends on (read once per process)."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {}
    for pkg in ("zsad", "torch", "torchvision", "open_clip_torch", "transformers", "segment-anything", "zarr", "numpy",
                "dask", "xarray", "prefect"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


STORAGE_OPTIONS_ENV = "ZSAD_STORAGE_OPTIONS"
# fsspec backends that cache directory listings per process (and share the cache between
# filesystem objects): without this, a long-lived process never sees units others wrote
FRESH_LISTINGS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def env_storage_options() -> dict[str, Any] | None:
    """fsspec options for a remote store from ``$ZSAD_STORAGE_OPTIONS`` (a JSON object, e.g.
    ``{"endpoint_url": "http://minio:9000"}``); credentials come from the backend's own
    environment or files (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``)."""
    text = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    if not text:
        return None
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as exc:  # the text may hold secrets: say where, not what
        raise StoreError(f"${STORAGE_OPTIONS_ENV} is not valid JSON (line {exc.lineno}, column {exc.colno}); "
                         'expected an object such as {"endpoint_url": "http://127.0.0.1:9000"}') from None
    if not isinstance(opts, dict):
        raise StoreError(f"${STORAGE_OPTIONS_ENV} must be a JSON object of fsspec options, got a "
                         f"{type(opts).__name__}")
    return opts

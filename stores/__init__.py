"""The Zarr stage store. ``StageStore`` (``zarr_store``; its hierarchy and records in
``hierarchy``) decides what is complete and what is left (``pending``), and opens read-only
views; where the bytes go is a backend's (``backends``: a local disk, written and renamed into
place; object storage, written in place with the marker last). Also: the key grammar and
``Unit`` (``keys``), every stage's arrays and dimensions (``schema``), the plain array layout
(``layout``) as local files (``fastio``) or few objects (``objectio``), units kept in memory
(``recent``), the unit index (``index``) and xarray views (``views``). The local S3 server and
the counting, fault-injecting proxy of the tests and benchmarks live in ``tests/``."""

from .keys import Unit, class_key, stage_root, threshold_key, unit_key
from .zarr_store import StageStore, StoreError

__all__ = ["Unit", "class_key", "stage_root", "threshold_key", "unit_key", "StageStore", "StoreError"]

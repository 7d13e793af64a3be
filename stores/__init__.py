"""The Zarr stage store: key grammar (``keys``), atomic unit writes and completeness
(``zarr_store``; its hierarchy and records in ``hierarchy``), the plain array layout
(``layout``) written as local files (``fastio``) or as few objects (``objectio``), units kept
in memory (``recent``), the unit index (``index``), xarray views (``views``), and for tests
and benchmarks a local S3 server (``s3server``) and a counting, fault-injecting proxy
(``s3proxy``)."""

from .keys import Unit, class_key, stage_root, threshold_key, unit_key
from .zarr_store import StageStore, StoreError

__all__ = ["Unit", "class_key", "stage_root", "threshold_key", "unit_key", "StageStore", "StoreError"]

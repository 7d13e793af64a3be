"""The Zarr stage store: key grammar, atomic unit writes, completeness, xarray views."""

from .keys import Unit, class_key, stage_root, threshold_key, unit_key
from .zarr_store import StageStore, StoreError

__all__ = ["Unit", "class_key", "stage_root", "threshold_key", "unit_key", "StageStore", "StoreError"]

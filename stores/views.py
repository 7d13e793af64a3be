"""xarray views of the store: one unit with named dimensions, or a table over images."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .keys import stage_root
from .zarr_store import StageStore, StoreError


def open_unit(store_url: str, key: str) -> xr.Dataset:
    """A unit as an ``xarray.Dataset`` (lazy, Dask-backed) with its named dimensions.

    CLIPSeg units get a ``prompt`` coordinate with the prompt texts.
    """
    st = StageStore(store_url)
    if not st.is_complete(key):
        raise StoreError(f"{store_url}: {key} is missing or incomplete")
    ds = xr.open_zarr(store_url, group=key, consolidated=False, zarr_format=3)
    if "prompts" in ds.attrs and "prompt" in ds.dims:
        ds = ds.assign_coords(prompt=np.asarray(ds.attrs["prompts"], dtype=object))
    return ds


def stage_table(store_url: str, dataset: str, aggregate_hash: str, image_hash: str) -> xr.Dataset:
    """Sample scores, labels and classes of one aggregate variant, along an ``image`` dimension."""
    st = StageStore(store_url)
    units = st.list_units("aggregate", aggregate_hash, dataset)
    if not units:
        raise StoreError(f"{store_url}: no units under {stage_root('aggregate', aggregate_hash)}/{dataset}")
    scores, labels = [], []
    for u in units:
        scores.append(st.read_attrs(f"{stage_root('aggregate', aggregate_hash)}/{u.path}")["sample_score"])
        labels.append(st.read_attrs(f"{stage_root('image', image_hash)}/{u.path}")["label"])
    return xr.Dataset(
        {"sample_score": ("image", np.asarray(scores)), "label": ("image", np.asarray(labels))},
        coords={"image": [u.path for u in units], "image_id": ("image", [u.image_id for u in units]),
                "class_name": ("image", [u.class_name for u in units]), "split": ("image", [u.split for u in units])})

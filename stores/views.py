"""xarray views of the store: one unit with named dimensions, or a table over images."""

from __future__ import annotations

import numpy as np
import xarray as xr
from .schema import BOXES, COMPONENTS

from .keys import stage_root
from .zarr_store import StageStore, StoreError


def _inputs(st: StageStore, stage: str, stage_hash: str) -> dict[str, str]:
    try:
        return dict(st.root[f"{stage}/{stage_hash}"].attrs.get("inputs", {}))
    except KeyError:
        return {}


def upstream_hash(st: StageStore, stage: str, stage_hash: str, wanted: str) -> str | None:
    """The hash of stage ``wanted`` that ``stage/stage_hash`` was made from (following the
    inputs each stage group records), or None."""
    todo, seen = [(stage, stage_hash)], set()
    while todo:
        s, h = todo.pop()
        if (s, h) in seen:
            continue
        seen.add((s, h))
        for name, hh in _inputs(st, s, h).items():
            if name == wanted:
                return hh
            todo.append((name, hh))
    return None


GRID_STAGES = ("clipseg", "clip_patch", "mutual")  # their y/x are a model's grid (352, 15 x 15), not pixels


def open_unit(store_url: str, key: str) -> xr.Dataset:
    """A unit as an ``xarray.Dataset`` (lazy, Dask-backed) with its named dimensions.

    Coordinates: ``prompt`` (the texts; stored as an array, so plain ``xarray.open_zarr`` has it
    too) on CLIPSeg and CLIP-text units; on units with a ``tile`` dimension,
    ``component`` (the foreground component each tile covers) and ``box_xyxy`` (its box, in
    image pixels) from the tiles stage they were made from; ``y``/``x`` pixel indices on
    image-sized maps. The store's metadata is not consolidated: units are written and replaced
    one at a time by concurrent runs, and a consolidated copy would go stale, so views open
    each unit with ``consolidated=False`` (plain ``xarray.open_zarr`` needs that argument too).
    """
    st = StageStore(store_url)
    if not st.is_complete(key):
        raise StoreError(f"{store_url}: {key} is missing or incomplete")
    ds = xr.open_zarr(store_url, group=key, consolidated=False, zarr_format=3)
    stage, stage_hash, rest = key.split("/", 2)
    if "prompts" in ds.attrs and "prompt" in ds.dims and "prompt" not in ds.coords:  # units before the array
        ds = ds.assign_coords(prompt=np.asarray(ds.attrs["prompts"], dtype=object))
    tiles_hash = upstream_hash(st, stage, stage_hash, "tiles") if "tile" in ds.dims else None
    if tiles_hash and st.is_complete(f"tiles/{tiles_hash}/{rest}"):
        arrays, _ = st.read_unit(f"tiles/{tiles_hash}/{rest}")
        ds = ds.assign_coords(component=("tile", arrays[COMPONENTS]),
                              box_xyxy=(("tile", "corner"), arrays[BOXES]))
    if stage not in GRID_STAGES and {"y", "x"} <= set(ds.dims):
        ds = ds.assign_coords(y=np.arange(ds.sizes["y"]), x=np.arange(ds.sizes["x"]))
    return ds


def variant_table(store_url: str, dataset: str, aggregate_hash: str) -> xr.Dataset:
    """``stage_table`` of one aggregate variant, its image stage found from the store itself."""
    image_hash = upstream_hash(StageStore(store_url), "aggregate", aggregate_hash, "image")
    if image_hash is None:
        raise StoreError(f"{store_url}: aggregate/{aggregate_hash} records no path back to its images")
    return stage_table(store_url, dataset, aggregate_hash, image_hash)


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

"""Stage ``aggregate``: tile scores, pixel maps and sample scores of variants, from the store only.

Nothing here imports a model: re-aggregation reads cached arrays and runs numpy. An image's
inputs are read once for all variants (``aggregate_variants`` shares fusion and tile scores).
The functions are plain Python so Dask (threads, processes, a distributed cluster) runs them.
"""

from __future__ import annotations

import functools
from typing import Any

from stores import Unit, class_key, unit_key
from zsad.aggregate import aggregate_variants
from zsad.config import AggregateConfig, config_from_dict
from zsad.pixelmaps import load_maps

from .runtime import open_store


@functools.lru_cache(maxsize=64)
def _text(store_url: str, key: str) -> tuple:
    arrays, attrs = open_store(store_url).read_unit(key)
    return arrays["emb_pd"], arrays["anomalous_p"], arrays["seed_extension_p"], float(attrs["logit_scale"])


def aggregate_unit(store_url: str, hashes: dict[str, str], variants: list[tuple[str, dict[str, Any]]],
                   unit_path: str, overwrite: bool = False) -> list[dict[str, Any]]:
    """Aggregate one image for every (variant hash, config) not yet complete; small rows back."""
    store = open_store(store_url)
    unit = Unit(*unit_path.split("/"))
    image = store.read_attrs(unit_key("image", hashes["image"], unit))
    rows, todo = [], []
    for vh, agg in variants:
        key = unit_key("aggregate", vh, unit)
        if not overwrite and store.is_complete(key, image["sha256"]):
            rows.append({"variant": vh, "unit": unit_path, "sample_score": store.read_attrs(key)["sample_score"],
                         "label": image["label"], "written": False})
        else:
            todo.append((vh, config_from_dict(AggregateConfig, agg)))
    if not todo:
        return rows
    tiles_key = unit_key("tiles", hashes["tiles"], unit)
    emb_pd, anomalous_p, ext_p, scale = _text(store_url, class_key("clip_text", hashes["clip_text"], unit.dataset,
                                                                   unit.class_name))
    results = aggregate_variants(
        store.read_array(unit_key("clip_image", hashes["clip_image"], unit), "emb_td"), emb_pd, anomalous_p, ext_p,
        scale, load_maps(store.read_array(unit_key("clipseg", hashes["clipseg"], unit), "maps_tlhw")),
        store.read_array(tiles_key, "boxes_xyxy"), store.read_array(tiles_key, "component_t"),
        (image["height"], image["width"]), [cfg for _, cfg in todo])
    for (vh, _), result in zip(todo, results):
        store.write_unit(unit_key("aggregate", vh, unit), {"tile_scores_t": (result.tile_scores_t, ("tile",)),
                                                           "pixel_map_hw": (result.pixel_map_hw, ("y", "x"))},
                         {"sample_score": result.sample_score, "label": image["label"]}, source=image["sha256"])
        rows.append({"variant": vh, "unit": unit_path, "sample_score": result.sample_score, "label": image["label"],
                     "written": True})
    return rows


def aggregate_units(store_url: str, hashes: dict[str, str], variants: list[tuple[str, dict[str, Any]]],
                    unit_paths: list[str], overwrite: bool = False) -> list[dict[str, Any]]:
    """A chunk of images (one Dask task), to keep scheduling overhead small against the work."""
    return [row for u in unit_paths for row in aggregate_unit(store_url, hashes, variants, u, overwrite)]

"""Stage ``aggregate``: tile scores, pixel map and sample score of one variant, from the store only.

Nothing here imports a model: re-aggregation reads cached arrays and runs numpy. The per-unit
function is plain Python so Dask (local threads/processes or a distributed cluster) runs it.
"""

from __future__ import annotations

import functools
from typing import Any

from stores import Unit, class_key, unit_key
from zsad.aggregate import aggregate_image
from zsad.config import AggregateConfig, config_from_dict
from zsad.pixelmaps import load_maps

from .runtime import open_store


@functools.lru_cache(maxsize=64)
def _text(store_url: str, key: str) -> tuple:
    arrays, attrs = open_store(store_url).read_unit(key)
    return arrays["emb_pd"], arrays["anomalous_p"], arrays["seed_extension_p"], float(attrs["logit_scale"])


def aggregate_unit(store_url: str, hashes: dict[str, str], variant_hash: str, agg: dict[str, Any],
                   unit_path: str, overwrite: bool = False) -> dict[str, Any]:
    """Aggregate one image for one variant; returns its sample score and label (small)."""
    store = open_store(store_url)
    unit = Unit(*unit_path.split("/"))
    image = store.read_attrs(unit_key("image", hashes["image"], unit))
    out_key = unit_key("aggregate", variant_hash, unit)
    if not overwrite and store.is_complete(out_key, image["sha256"]):
        attrs = store.read_attrs(out_key)
        return {"unit": unit_path, "sample_score": attrs["sample_score"], "label": image["label"], "written": False}
    cfg = config_from_dict(AggregateConfig, agg)
    tiles_key = unit_key("tiles", hashes["tiles"], unit)
    emb_pd, anomalous_p, ext_p, scale = _text(store_url, class_key("clip_text", hashes["clip_text"], unit.dataset,
                                                                   unit.class_name))
    result = aggregate_image(
        store.read_array(unit_key("clip_image", hashes["clip_image"], unit), "emb_td"), emb_pd, anomalous_p, ext_p,
        scale, load_maps(store.read_array(unit_key("clipseg", hashes["clipseg"], unit), "maps_tlhw")),
        store.read_array(tiles_key, "boxes_xyxy"), store.read_array(tiles_key, "component_t"),
        (image["height"], image["width"]), cfg)
    store.write_unit(out_key, {"tile_scores_t": (result.tile_scores_t, ("tile",)),
                               "pixel_map_hw": (result.pixel_map_hw, ("y", "x"))},
                     {"sample_score": result.sample_score, "label": image["label"]}, source=image["sha256"])
    return {"unit": unit_path, "sample_score": result.sample_score, "label": image["label"], "written": True}


def aggregate_units(store_url: str, hashes: dict[str, str], variant_hash: str, agg: dict[str, Any],
                    unit_paths: list[str], overwrite: bool = False) -> list[dict[str, Any]]:
    """A chunk of units (one Dask task), to keep scheduling overhead small against the work."""
    return [aggregate_unit(store_url, hashes, variant_hash, agg, u, overwrite) for u in unit_paths]

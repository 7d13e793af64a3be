"""Stage ``aggregate``: tile scores, component scores and sample scores of variants, from the store only.

Nothing here imports a model: re-aggregation reads cached arrays and runs numpy. An image's
inputs are read once for all variants (``aggregate_variants`` shares fusion and tile scores).
Per-variant units are small (tile scores, component scores, the sample score); the full-size
pixel map is written only when asked (``save_maps``, float16). Evaluation streams each image's
maps into per-class accumulators in the same pass, so metrics never need stored maps.
The functions are plain Python so Dask (threads, processes, a distributed cluster) runs them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from stores import Unit, class_key, unit_key
from zsad.aggregate import Aggregated, aggregate_variants, component_means
from zsad.config import AggregateConfig, config_from_dict
from zsad.datasets import ground_truth
from zsad.evaluation import ClassEvaluator

from .runtime import open_store

Variants = list[tuple[str, dict[str, Any]]]


@functools.lru_cache(maxsize=64)
def _text(store_url: str, key: str) -> tuple:
    arrays, attrs = open_store(store_url).read_unit(key)
    return arrays["emb_pd"], arrays["anomalous_p"], arrays["seed_extension_p"], float(attrs["logit_scale"])


def compute_unit(store_url: str, hashes: dict[str, str], unit: Unit, image: dict[str, Any],
                 cfgs: list[AggregateConfig]) -> tuple[list[Aggregated], np.ndarray]:
    """Aggregate one image for ``cfgs`` in memory, from its cached model outputs; also its
    tiles' component ids (T,)."""
    store = open_store(store_url)
    tiles_key = unit_key("tiles", hashes["tiles"], unit)
    emb_pd, anomalous_p, ext_p, scale = _text(store_url, class_key("clip_text", hashes["clip_text"], unit.dataset,
                                                                   unit.class_name))
    component_t = store.read_array(tiles_key, "component_t")
    return aggregate_variants(
        store.read_array(unit_key("clip_image", hashes["clip_image"], unit), "emb_td"), emb_pd, anomalous_p, ext_p,
        scale, store.read_array(unit_key("clipseg", hashes["clipseg"], unit), "maps_tlhw"),
        store.read_array(tiles_key, "boxes_xyxy"), component_t, (image["height"], image["width"]), cfgs), component_t


def pixel_map(store_url: str, hashes: dict[str, str], agg: AggregateConfig, unit_path: str,
              image: dict[str, Any] | None = None) -> np.ndarray:
    """One image's (H, W) float32 anomaly map for one variant, computed now (nothing written);
    ``image``: its record, when the caller has read it already."""
    unit = Unit(*unit_path.split("/"))
    if image is None:
        image = open_store(store_url).read_attrs(unit_key("image", hashes["image"], unit))
    return compute_unit(store_url, hashes, unit, image, [agg])[0][0].pixel_map_hw


def _write(store, vh: str, unit: Unit, image: dict[str, Any], component_t: np.ndarray, result: Aggregated,
           save_maps: bool) -> None:
    arrays = {"tile_scores_t": (result.tile_scores_t, ("tile",)),
              "component_scores_c": (component_means(result.tile_scores_t, component_t), ("component",))}
    if save_maps:
        arrays["pixel_map_hw"] = (result.pixel_map_hw.astype(np.float16), ("y", "x"))
    store.write_unit(unit_key("aggregate", vh, unit), arrays,
                     {"sample_score": result.sample_score, "label": image["label"], "has_map": save_maps},
                     source=image["sha256"], replace=True)  # aggregate decided to write (e.g. maps now wanted)


def aggregate_unit(store_url: str, hashes: dict[str, str], variants: Variants, unit_path: str,
                   overwrite: bool = False, save_maps: bool = False,
                   evaluators: dict[tuple[str, str], ClassEvaluator] | None = None,
                   pixel_size: int | None = None, read_only: bool = False) -> list[dict[str, Any]]:
    """Aggregate one image for every (variant hash, config) not yet complete; small rows back.

    With ``evaluators`` (a dict this call fills, keyed ``(variant hash, class)``), a labelled
    image's maps are computed for every variant and streamed into them. ``read_only`` computes
    what is missing without writing it.
    """
    store = open_store(store_url)
    unit = Unit(*unit_path.split("/"))
    image = store.read_attrs(unit_key("image", hashes["image"], unit))
    evaluate = evaluators is not None and image["label"] >= 0
    rows, todo = [], []
    for vh, agg in variants:
        attrs = None if overwrite else store.complete_attrs(unit_key("aggregate", vh, unit), image["sha256"])
        done = attrs is not None and (not save_maps or attrs.get("has_map"))
        if done and not evaluate:
            rows.append({"variant": vh, "unit": unit_path, "sample_score": attrs["sample_score"],
                         "label": image["label"], "written": False})
        else:
            todo.append((vh, config_from_dict(AggregateConfig, agg), not done and not read_only))
    if not todo:
        return rows
    results, component_t = compute_unit(store_url, hashes, unit, image, [cfg for _, cfg, _ in todo])
    mask = ground_truth(image["mask_path"], (image["height"], image["width"])) if evaluate else None
    for (vh, _, write), result in zip(todo, results):
        if write:
            _write(store, vh, unit, image, component_t, result, save_maps)
        if evaluate:
            evaluators.setdefault((vh, unit.class_name), ClassEvaluator(pixel_size=pixel_size)).update(
                image["label"], result.sample_score, mask, result.pixel_map_hw)
        rows.append({"variant": vh, "unit": unit_path, "sample_score": result.sample_score, "label": image["label"],
                     "written": write})
    return rows


def aggregate_units(store_url: str, hashes: dict[str, str], variants: Variants, unit_paths: list[str],
                    overwrite: bool = False, save_maps: bool = False, evaluate: bool = False,
                    pixel_size: int | None = None, read_only: bool = False) -> dict[str, Any]:
    """A chunk of images (one Dask task): ``{"rows": [...], "evaluators": {(vh, class): ...}}``."""
    evaluators: dict[tuple[str, str], ClassEvaluator] | None = {} if evaluate else None
    rows = [row for u in unit_paths for row in aggregate_unit(store_url, hashes, variants, u, overwrite, save_maps,
                                                              evaluators, pixel_size, read_only)]
    return {"rows": rows, "evaluators": evaluators or {}}


def merge_chunks(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two chunks' results as one (a tree of these bounds what is held at once)."""
    evaluators = dict(a["evaluators"])
    for key, ev in b["evaluators"].items():
        evaluators[key] = evaluators[key].merge(ev) if key in evaluators else ev
    return {"rows": a["rows"] + b["rows"], "evaluators": evaluators}

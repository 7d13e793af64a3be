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
from zsad.modes import normalise
from zsad.patches import few_shot_scores

from .plan import PATCH_STAGE
from .runtime import open_store

Variants = list[tuple[str, dict[str, Any]]]
Contexts = dict[tuple[str, str], dict[str, Any]]  # (variant hash, class) -> tasks.patches context


@functools.lru_cache(maxsize=64)
def _text(store_url: str, key: str) -> tuple:
    arrays, attrs = open_store(store_url).read_unit(key)
    return arrays["emb_pd"], arrays["anomalous_p"], arrays["seed_extension_p"], float(attrs["logit_scale"])


@functools.lru_cache(maxsize=2)  # chunks run class by class; a full-shot memory can be GBs
def _memory(store_url: str, key: str | None, references: tuple[str, ...], source: str) -> np.ndarray:
    """A class's reference patch features: its memory unit, or (read-only runs that found none)
    the reference units themselves; ``source`` keys the cache to the reference set."""
    store = open_store(store_url)
    if key is not None:
        return store.read_array(key, "patches_tlyxc")
    return np.concatenate([store.read_array(k, "patches_tlyxc") for k in references])


def patch_scores(store_url: str, hashes: dict[str, str], unit: Unit, cfg: AggregateConfig,
                 ctx: dict[str, Any] | None) -> np.ndarray | None:
    """(T, gy, gx) patch scores of a few-shot or mutual variant (None for zero-shot)."""
    if cfg.mode == "zero-shot":
        return None
    if ctx is None:
        raise ValueError(f"{unit.path}: a {cfg.mode} variant needs its class's reference set or batch "
                         "(tasks.patches.patch_contexts; run_variants builds them)")
    store = open_store(store_url)
    if cfg.mode == "few-shot":
        query = store.read_array(unit_key(PATCH_STAGE, hashes[PATCH_STAGE], unit), "patches_tlyxc")
        memory = _memory(store_url, ctx["memory"], tuple(ctx["references"]), ctx["source"])
        return few_shot_scores(query, memory, cfg.neighbourhood)
    if unit.path in ctx["scores"]:  # a read-only run keeps them in memory
        return ctx["scores"][unit.path]
    return store.read_array(unit_key("mutual", ctx["mutual"], unit), "scores_tyx")


def compute_unit(store_url: str, hashes: dict[str, str], unit: Unit, image: dict[str, Any],
                 cfgs: list[AggregateConfig], contexts: list[dict[str, Any] | None] | None = None
                 ) -> tuple[list[Aggregated], np.ndarray]:
    """Aggregate one image for ``cfgs`` in memory, from its cached model outputs; also its
    tiles' component ids (T,). ``contexts``: per variant, its patch context (few-shot, mutual)."""
    store = open_store(store_url)
    contexts = contexts if contexts is not None else [None] * len(cfgs)
    patches = [patch_scores(store_url, hashes, unit, c, ctx) for c, ctx in zip(cfgs, contexts)]
    tiles_key = unit_key("tiles", hashes["tiles"], unit)
    emb_pd, anomalous_p, ext_p, scale = _text(store_url, class_key("clip_text", hashes["clip_text"], unit.dataset,
                                                                   unit.class_name))
    component_t = store.read_array(tiles_key, "component_t")
    return aggregate_variants(
        store.read_array(unit_key("clip_image", hashes["clip_image"], unit), "emb_td"), emb_pd, anomalous_p, ext_p,
        scale, store.read_array(unit_key("clipseg", hashes["clipseg"], unit), "maps_tlhw"),
        store.read_array(tiles_key, "boxes_xyxy"), component_t, (image["height"], image["width"]), cfgs,
        patches), component_t


def pixel_map(store_url: str, hashes: dict[str, str], agg: AggregateConfig, unit_path: str,
              image: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> np.ndarray:
    """One image's (H, W) float32 anomaly map for one variant, computed now (nothing written);
    ``image``: its record, when the caller has read it already; ``context``: the variant's
    patch context for the image's class (few-shot, mutual: ``tasks.patches.patch_contexts``)."""
    unit = Unit(*unit_path.split("/"))
    if image is None:
        image = open_store(store_url).read_attrs(unit_key("image", hashes["image"], unit))
    return compute_unit(store_url, hashes, unit, image, [normalise(agg)], [context])[0][0].pixel_map_hw


def _write(store, vh: str, unit: Unit, image: dict[str, Any], component_t: np.ndarray, result: Aggregated,
           save_maps: bool, source: str) -> None:
    arrays = {"tile_scores_t": (result.tile_scores_t, ("tile",)),
              "component_scores_c": (component_means(result.tile_scores_t, component_t), ("component",))}
    if save_maps:
        arrays["pixel_map_hw"] = (result.pixel_map_hw.astype(np.float16), ("y", "x"))
    store.write_unit(unit_key("aggregate", vh, unit), arrays,
                     {"sample_score": result.sample_score, "label": image["label"], "has_map": save_maps},
                     source=source, replace=True)  # aggregate decided to write (e.g. maps now wanted)


def aggregate_unit(store_url: str, hashes: dict[str, str], variants: Variants, unit_path: str,
                   overwrite: bool = False, save_maps: bool = False,
                   evaluators: dict[tuple[str, str], ClassEvaluator] | None = None,
                   pixel_size: int | None = None, read_only: bool = False, contexts: Contexts | None = None
                   ) -> list[dict[str, Any]]:
    """Aggregate one image for every (variant hash, config) not yet complete; small rows back.

    With ``evaluators`` (a dict this call fills, keyed ``(variant hash, class)``), a labelled
    image's maps are computed for every variant and streamed into them. ``read_only`` computes
    what is missing without writing it. ``contexts`` hold the patch evidence of few-shot and
    mutual variants; their units' source is ``{sha256}+{reference set or batch digest}``.
    """
    store = open_store(store_url)
    unit = Unit(*unit_path.split("/"))
    image = store.read_attrs(unit_key("image", hashes["image"], unit))
    evaluate = evaluators is not None and image["label"] >= 0
    rows, todo = [], []
    for vh, agg in variants:
        ctx = (contexts or {}).get((vh, unit.class_name))
        source = image["sha256"] if ctx is None else f"{image['sha256']}+{ctx['source']}"
        attrs = None if overwrite else store.complete_attrs(unit_key("aggregate", vh, unit), source)
        done = attrs is not None and (not save_maps or attrs.get("has_map"))
        if done and not evaluate:
            rows.append({"variant": vh, "unit": unit_path, "sample_score": attrs["sample_score"],
                         "label": image["label"], "written": False})
        else:
            todo.append((vh, normalise(config_from_dict(AggregateConfig, agg)), not done and not read_only, ctx,
                         source))
    if not todo:
        return rows
    results, component_t = compute_unit(store_url, hashes, unit, image, [t[1] for t in todo], [t[3] for t in todo])
    mask = ground_truth(image["mask_path"], (image["height"], image["width"])) if evaluate else None
    for (vh, _, write, _, source), result in zip(todo, results):
        if write:
            _write(store, vh, unit, image, component_t, result, save_maps, source)
        if evaluate:
            evaluators.setdefault((vh, unit.class_name), ClassEvaluator(pixel_size=pixel_size)).update(
                image["label"], result.sample_score, mask, result.pixel_map_hw)
        rows.append({"variant": vh, "unit": unit_path, "sample_score": result.sample_score, "label": image["label"],
                     "written": write})
    return rows


def aggregate_units(store_url: str, hashes: dict[str, str], variants: Variants, unit_paths: list[str],
                    overwrite: bool = False, save_maps: bool = False, evaluate: bool = False,
                    pixel_size: int | None = None, read_only: bool = False, contexts: Contexts | None = None
                    ) -> dict[str, Any]:
    """A chunk of images (one Dask task): ``{"rows": [...], "evaluators": {(vh, class): ...}}``."""
    evaluators: dict[tuple[str, str], ClassEvaluator] | None = {} if evaluate else None
    rows = [row for u in unit_paths for row in aggregate_unit(store_url, hashes, variants, u, overwrite, save_maps,
                                                              evaluators, pixel_size, read_only, contexts)]
    return {"rows": rows, "evaluators": evaluators or {}}


def merge_chunks(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two chunks' results as one (a tree of these bounds what is held at once)."""
    evaluators = dict(a["evaluators"])
    for key, ev in b["evaluators"].items():
        evaluators[key] = evaluators[key].merge(ev) if key in evaluators else ev
    return {"rows": a["rows"] + b["rows"], "evaluators": evaluators}

"""Flow ``evaluate``: per-class and mean metrics of each variant, as CSV/JSON and the seed's tables."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from prefect import flow

from stores import unit_key
from tasks.plan import plan_stages
from tasks.runtime import open_store
from zsad.datasets import ground_truth
from zsad.evaluation import ClassEvaluator, seed_table, with_mean

from .aggregate import run_variants
from .thresholds import save_thresholds
from .configs import load_pipeline_config, variant_grid


def collect_variant(store: str, dataset: str, hashes: dict[str, str], variant_hash: str,
                    classes: list[str] | None = None, pixel_size: int | None = None
                    ) -> tuple[dict[str, ClassEvaluator], dict[str, list[dict[str, Any]]]]:
    """Stream one variant's labelled images into per-class evaluators; also the per-image rows
    (unit, image record, label, sample score) of every image, unlabelled ones (label -1) included,
    that the report ranks."""
    st = open_store(store)
    evaluators: dict[str, ClassEvaluator] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for unit in st.list_units("image", hashes["image"], dataset, classes):
        image = st.read_attrs(unit_key("image", hashes["image"], unit))
        key = unit_key("aggregate", variant_hash, unit)
        if not st.is_complete(key):
            continue  # an image that failed in precompute has no score
        if image["label"] < 0:
            score = st.read_attrs(key)["sample_score"]
        else:
            arrays, attrs = st.read_unit(key)
            pixel, score = arrays["pixel_map_hw"], attrs["sample_score"]
            mask = ground_truth(image["mask_path"], pixel.shape)
            evaluators.setdefault(unit.class_name, ClassEvaluator(pixel_size=pixel_size)).update(
                image["label"], score, mask, pixel)
        rows.setdefault(unit.class_name, []).append({"unit": unit, "image": image, "label": image["label"],
                                                     "score": score})
    if not rows:
        raise ValueError(f"{store}: no scored images of {dataset!r}; run `zsad precompute` first")
    return evaluators, rows


def evaluate_variant(store: str, dataset: str, hashes: dict[str, str], variant_hash: str,
                     classes: list[str] | None, pixel_size: int | None, fpr: float | None = 0.01
                     ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Metrics per class (plus the mean) and the decision thresholds each class's images give;
    the thresholds are also stored under the variant (``flows.thresholds``)."""
    evaluators, _ = collect_variant(store, dataset, hashes, variant_hash, classes, pixel_size)
    if not evaluators:
        raise ValueError(f"{store}: the images of {dataset!r} have no labels, so there is nothing to evaluate; "
                         "`zsad predict` scores unlabelled images and `zsad report` ranks them")
    st, thresholds = open_store(store), {}
    for cls, ev in sorted(evaluators.items()):
        found = ev.thresholds(dataset, fpr)
        if pixel_size is not None:
            found["pixel"] = {}  # thresholds of resized maps would not fit the full-size maps predict draws
        save_thresholds(st, variant_hash, cls, found)
        thresholds[cls] = {f"{lvl}_{kind}": t.value for lvl, by_kind in found.items() for kind, t in by_kind.items()}
    return with_mean({cls: ev.result() for cls, ev in sorted(evaluators.items())}), thresholds


def write_results(out_dir: Path, results: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=lambda v: None))
    rows = [{"variant": v["label"], "variant_hash": vh, "class": cls, **m,
             **{f"threshold_{k}": t for k, t in v.get("thresholds", {}).get(cls, {}).items()}}
            for vh, v in results.items() for cls, m in v["metrics"].items()]
    fields = ["variant", "variant_hash", "class"] + sorted({k for r in rows for k in r} - {"variant", "variant_hash",
                                                                                              "class"})
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows)
    md = []
    for vh, v in results.items():
        for level in ("sample", "pixel"):
            md += [f"### {v['label']} ({vh}): {level}-level F1-max (%)", "", seed_table(v["metrics"], level), ""]
    (out_dir / "tables.md").write_text("\n".join(md))
    return [out_dir / "metrics.json", out_dir / "metrics.csv", out_dir / "tables.md"]


def run_evaluate(store: str = "zsad-store.zarr", dataset: str = "synthetic", config: str = "tiny",
                 variants: str | None = "seed", classes: list[str] | None = None, out_dir: str = "zsad-results",
                 pixel_size: int | None = None, scheduler: str = "threads", fpr: float | None = 0.01,
                 echo: bool = True) -> dict[str, Any]:
    """Aggregate what is missing, then compute F1-max, AUROC, AP (sample, pixel) and AUPRO, and
    store each class's decision thresholds (F1-max, and at ``fpr`` on its normal images)."""
    meta = run_variants(store, dataset, config, variants, classes, scheduler)
    hashes = plan_stages(load_pipeline_config(config)).hashes
    results = {}
    for vh, m in meta.items():
        metrics, thresholds = evaluate_variant(store, dataset, hashes, vh, classes, pixel_size, fpr)
        results[vh] = {"label": m["label"], "config": m["config"], "metrics": metrics, "thresholds": thresholds}
    write_results(Path(out_dir), results)
    if echo:
        for vh, v in results.items():
            print(f"\n{v['label']} ({vh})")
            for level in ("sample", "pixel"):
                print(f"{level}-level F1-max (%):\n" + seed_table(v["metrics"], level))
        print(f"\nthresholds stored in {store} (thresholds/<variant>/<class>); metrics in {out_dir}")
    return results


@flow(name="zsad-evaluate", persist_result=True)
def evaluate(store: str = "zsad-store.zarr", dataset: str = "synthetic", config: str = "tiny",
             variants: str | None = "seed", classes: list[str] | None = None, out_dir: str = "zsad-results",
             pixel_size: int | None = None, scheduler: str = "threads", fpr: float | None = 0.01) -> dict[str, Any]:
    """Metrics per class and mean for each variant; stores each class's decision thresholds."""
    return run_evaluate(store, dataset, config, variants, classes, out_dir, pixel_size, scheduler, fpr)


__all__ = ["evaluate", "run_evaluate", "evaluate_variant", "write_results", "variant_grid"]

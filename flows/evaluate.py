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
from .configs import load_pipeline_config, variant_grid


def collect_variant(store: str, dataset: str, hashes: dict[str, str], variant_hash: str,
                    classes: list[str] | None = None, pixel_size: int | None = None
                    ) -> tuple[dict[str, ClassEvaluator], dict[str, list[dict[str, Any]]]]:
    """Stream one variant's labelled images into per-class evaluators; also the per-image rows
    (unit, image record, label, sample score) that the report ranks."""
    st = open_store(store)
    evaluators: dict[str, ClassEvaluator] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for unit in st.list_units("image", hashes["image"], dataset, classes):
        image = st.read_attrs(unit_key("image", hashes["image"], unit))
        if image["label"] < 0:
            continue  # unlabelled folder images are scored, not evaluated
        arrays, attrs = st.read_unit(unit_key("aggregate", variant_hash, unit))
        pixel = arrays["pixel_map_hw"]
        mask = ground_truth(image["mask_path"], pixel.shape)
        evaluators.setdefault(unit.class_name, ClassEvaluator(pixel_size=pixel_size)).update(
            image["label"], attrs["sample_score"], mask, pixel)
        rows.setdefault(unit.class_name, []).append({"unit": unit, "image": image, "label": image["label"],
                                                     "score": attrs["sample_score"]})
    if not evaluators:
        raise ValueError(f"{store}: no labelled images of {dataset!r} to evaluate; run `zsad precompute` first")
    return evaluators, rows


def evaluate_variant(store: str, dataset: str, hashes: dict[str, str], variant_hash: str,
                     classes: list[str] | None, pixel_size: int | None) -> dict[str, dict[str, float]]:
    evaluators, _ = collect_variant(store, dataset, hashes, variant_hash, classes, pixel_size)
    return with_mean({cls: ev.result() for cls, ev in sorted(evaluators.items())})


def write_results(out_dir: Path, results: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=lambda v: None))
    rows = [{"variant": v["label"], "variant_hash": vh, "class": cls, **m}
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


@flow(name="zsad-evaluate")
def evaluate(store: str = "zsad-store.zarr", dataset: str = "synthetic", config: str = "tiny",
             variants: str | None = "seed", classes: list[str] | None = None, out_dir: str = "zsad-results",
             pixel_size: int | None = None, scheduler: str = "threads") -> dict[str, Any]:
    """Aggregate what is missing, then compute F1-max, AUROC, AP (sample, pixel) and AUPRO."""
    meta = run_variants(store, dataset, config, variants, classes, scheduler)
    hashes = plan_stages(load_pipeline_config(config)).hashes
    results = {}
    for vh, m in meta.items():
        results[vh] = {"label": m["label"], "config": m["config"],
                       "metrics": evaluate_variant(store, dataset, hashes, vh, classes, pixel_size)}
    write_results(Path(out_dir), results)
    for vh, v in results.items():
        print(f"\n{v['label']} ({vh})")
        for level in ("sample", "pixel"):
            print(f"{level}-level F1-max (%):\n" + seed_table(v["metrics"], level))
    return results


__all__ = ["evaluate", "evaluate_variant", "write_results", "variant_grid"]

"""Flow ``evaluate``: per-class and mean metrics of each variant, as CSV/JSON and the seed's tables."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from prefect import flow

from stores import StageStore
from tasks.runtime import open_store
from zsad.evaluation import evaluate_classes, seed_table

from .aggregate import VariantOutcome, run_variants
from .configs import variant_grid
from .thresholds import save_thresholds


def variant_results(meta: VariantOutcome, st: StageStore, dataset: str, variant_hash: str, fpr: float | None,
                    pixel_size: int | None) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Metrics per class (plus the mean) of one variant from the evaluators ``run_variants``
    filled, and the decision thresholds each class's images give (also stored under the
    variant unless ``st`` is read-only)."""
    evaluators = meta.evaluators
    if not evaluators:
        raise ValueError(f"{st.url}: the images of {dataset!r} have no labels, so there is nothing to evaluate; "
                         "`zsad predict` scores unlabelled images and `zsad report` ranks them")
    thresholds = {}
    for cls, ev in sorted(evaluators.items()):
        found = ev.thresholds(dataset, fpr)
        if pixel_size is not None:
            found["pixel"] = {}  # thresholds of resized maps would not fit the full-size maps predict draws
        if not st.read_only:
            save_thresholds(st, variant_hash, cls, found)
        thresholds[cls] = {f"{lvl}_{kind}": t.value for lvl, by_kind in found.items() for kind, t in by_kind.items()}
    return evaluate_classes(evaluators), thresholds


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
                 pixel_size: int | None = None, scheduler: str = "auto", fpr: float | None = 0.01,
                 echo: bool = True, save_maps: bool = False, read_only: bool = False, device: str = "cpu",
                 dask_address: str | None = None, shared_path: bool = False) -> dict[str, Any]:
    """F1-max, AUROC, AP (sample, pixel) and AUPRO in one aggregation pass (maps are streamed, not
    stored unless ``save_maps``), and each class's decision thresholds (F1-max, and at ``fpr`` on
    its normal images) stored under the variant. ``read_only`` writes nothing to the store (the
    metrics and thresholds go only to ``out_dir``). ``device``: ``cuda`` pastes and counts the
    maps on the GPU."""
    meta = run_variants(store, dataset, config, variants, classes, scheduler, evaluate=True, pixel_size=pixel_size,
                        save_maps=save_maps, read_only=read_only, device=device, dask_address=dask_address,
                        shared_path=shared_path)
    results, st = {}, open_store(store)
    st = st.read_only_view() if read_only else st
    for vh, m in meta.items():
        metrics, thresholds = variant_results(m, st, dataset, vh, fpr, pixel_size)
        results[vh] = {"label": m.label, "config": m.config, "metrics": metrics, "thresholds": thresholds}
    write_results(Path(out_dir), results)
    if echo:
        for vh, v in results.items():
            print(f"\n{v['label']} ({vh})")
            for level in ("sample", "pixel"):
                print(f"{level}-level F1-max (%):\n" + seed_table(v["metrics"], level))
        where = "not stored (--read-only)" if read_only else f"stored in {store} (thresholds/<variant>/<class>)"
        print(f"\nthresholds {where}; metrics in {out_dir}")
    return results


@flow(name="zsad-evaluate", persist_result=True)
def evaluate(store: str = "zsad-store.zarr", dataset: str = "synthetic", config: str = "tiny",
             variants: str | None = "seed", classes: list[str] | None = None, out_dir: str = "zsad-results",
             pixel_size: int | None = None, scheduler: str = "auto", fpr: float | None = 0.01,
             save_maps: bool = False, read_only: bool = False, device: str = "cpu", dask_address: str | None = None,
             shared_path: bool = False) -> dict[str, Any]:
    """Metrics per class and mean for each variant; stores each class's decision thresholds.
    ``dask_address``: aggregate on that Dask cluster (``flows.cluster``)."""
    return run_evaluate(store, dataset, config, variants, classes, out_dir, pixel_size, scheduler, fpr,
                        save_maps=save_maps, read_only=read_only, device=device, dask_address=dask_address,
                        shared_path=shared_path)


__all__ = ["evaluate", "run_evaluate", "variant_results", "write_results", "variant_grid"]

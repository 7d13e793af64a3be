"""``zsad predict`` and ``zsad calibrate``: score files against stored thresholds.

Both reuse the store (only missing stages are computed), aggregate one variant, and isolate
bad files: an unreadable image is a row with its error, and every other image is scored.
``predict`` writes ``scores.csv`` and one panel PNG per image; ``calibrate`` stores false-alarm-
rate thresholds from known-good images.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from zsad.config import to_jsonable
from zsad.datasets import image_ids
from zsad.evaluation import ClassEvaluator
from zsad.stores import open_store, unit_key
from zsad.stores.schema import PIXEL_MAP
from zsad.thresholds import Threshold

from .command_requests import CalibrateRequest, PredictRequest

from .score_files import error_row, resolve_variant, score_files, scored_row
from .scores_csv import write_rows
from .thresholds import Decision, resolve_thresholds, save_thresholds



def run_predict(request: PredictRequest) -> dict[str, Any]:
    """Score images (files or folders) of ``class_name``: ``scores.csv``, one PNG per image.

    Thresholds are resolved first (``--threshold auto`` without a stored one fails before any
    model runs). Returns a small summary: counts, paths, the thresholds used and the rows.
    """
    r = request
    class_name, variant = r.class_name, resolve_variant(r.variant, r.reference, r.name, r.config)
    decision = resolve_thresholds(r.threshold, r.pixel_threshold, open_store(r.store), variant.variant_hash,
                                  class_name, r.store)
    scored = score_files(r, r.paths, variant.config)
    errors, vh = scored.errors, scored.variant_hash
    out_dir = Path(r.out)
    st, rows = open_store(r.store), []
    png_names = short_names([s.path for s, _ in scored.items])
    for (sample, unit), png_name in zip(scored.items, png_names):
        if unit is None:
            continue
        png = out_dir / "heatmaps" / f"{png_name}.png" if r.heatmaps else None
        rows.append(scored_row(st, sample, unit, vh, decision, png, variant.label))
    rows += [error_row(e, class_name) for e in errors] + [error_row(e, class_name, "skipped")
                                                           for e in scored.skipped]
    csv_path = write_scores(out_dir / "scores.csv", rows)
    summary = summarise(rows, decision, csv_path, vh)
    if r.echo:
        print_table(rows, summary)
        for e in errors:
            print(f"zsad predict: error: {e.text()}", file=sys.stderr)
    return summary


def short_names(paths: list[str]) -> list[str]:
    """File names for the panels: each path relative to the folder all share, ``/`` as ``_``,
    without the extension, unless two would be equal (then the whole path, made key-safe).

    Example:
        >>> short_names(["/d/good/000.png", "/d/dent/000.png"])
        ['good_000', 'dent_000']
    """
    if not paths:
        return []
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    names = [os.path.splitext(os.path.relpath(os.path.abspath(p), root))[0].replace(os.sep, "_") for p in paths]
    return names if len(set(names)) == len(names) else image_ids([os.path.abspath(p) for p in paths])


def write_scores(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``scores.csv`` of ``rows`` (the one schema: ``zsad.flows.scores_csv``)."""
    return write_rows(path, rows)


def summarise(rows: list[dict[str, Any]], decision: Decision, csv_path: Path, vh: str) -> dict[str, Any]:
    scored = [r for r in rows if r["status"] == "scored"]
    return {"n_scored": len(scored), "n_failed": sum(r["status"] == "error" for r in rows),
            "n_skipped": sum(r["status"] == "skipped" for r in rows),
            "n_anomalous": sum(r["decision"] == "anomalous" for r in scored), "scores_csv": str(csv_path),
            "threshold": decision.image, "pixel_threshold": decision.pixel, "threshold_source": decision.source,
            "variant_hash": vh, "rows": rows}


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    files = [os.path.relpath(r["path"]) for r in rows]
    width = max([len(f) for f in files] + [4])
    print(f"{'file':<{width}}  {'score':>7}  decision   heatmap")
    for r, f in zip(rows, files):
        if r["status"] == "scored":
            print(f"{f:<{width}}  {r['sample_score']:7.4f}  {r['decision']:<9}  {r['heatmap']}")
        else:
            print(f"{f:<{width}}  {'-':>7}  {r['status'].upper():<9}  {r['error']}")
    print(f"\n{summary['n_scored']} scored ({summary['n_anomalous']} anomalous), {summary['n_failed']} failed, "
          f"{summary['n_skipped']} skipped; "
          f"threshold {summary['threshold_source']}; table {summary['scores_csv']}")


def run_calibrate(request: CalibrateRequest) -> dict[str, Any]:
    """Store image and pixel thresholds at false-alarm rate ``fpr`` from known-good images only."""
    r = request
    good, class_name, fpr = list(r.good), r.class_name, r.fpr
    if not 0.0 <= fpr < 1.0 or math.isnan(fpr):
        raise ValueError(f"--fpr must be in [0, 1), got {fpr}")
    variant = resolve_variant(r.variant, r.reference, r.name, r.config)
    scored = score_files(r, r.good, variant.config)
    errors, vh = scored.errors, scored.variant_hash
    st, ev = open_store(r.store), ClassEvaluator()
    for sample, unit in scored.items:
        if unit is not None:
            arrays, attrs = st.read_unit(unit_key("aggregate", vh, unit))
            ev.update(0, attrs["sample_score"], None, arrays[PIXEL_MAP])
    if not ev.labels:
        raise ValueError(f"calibrate: none of {good} could be scored: " + "; ".join(e.error for e in errors))
    source = f"known-good images {', '.join(good)}"
    found = ev.thresholds(source, fpr)
    save_thresholds(st, vh, class_name, {lvl: {"fpr": found[lvl]["fpr"]} for lvl in found if "fpr" in found[lvl]})
    t: Threshold = found["image"]["fpr"]
    return {"class": class_name, "variant_hash": vh, "variant": to_jsonable(variant.config),
            "n_images": len(ev.labels), "n_failed": len(errors), "fpr": fpr, "image_threshold": t.value,
            "pixel_threshold": found["pixel"].get("fpr") and found["pixel"]["fpr"].value,
            "failed": [e.record() for e in errors]}

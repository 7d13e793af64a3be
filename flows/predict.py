"""``zsad predict`` and ``zsad calibrate``: score files against stored thresholds.

Both reuse the store (only missing stages are computed), aggregate one variant, and isolate
bad files: an unreadable image is a row with its error, and every other image is scored.
``predict`` writes ``scores.csv`` and one panel PNG per image; ``calibrate`` stores false-alarm-
rate thresholds from known-good images.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsad.stores import Unit, unit_key
from zsad.stores.schema import PIXEL_MAP
from zsad.tasks.plan import plan_stages
from zsad.stores import open_store
from zsad.tasks.failures import Failure
from zsad.config import AggregateConfig, to_jsonable
from zsad.datasets import Sample, image_ids, load_image, scan_folder
from zsad.evaluation import ClassEvaluator
from zsad.plots import save_png
from zsad.predict import panel_png
from zsad.thresholds import Threshold, decide
from zsad.sweep import expand, parse_axes
from zsad.detectors import DETECTORS, PATCH_STAGE
from zsad.stages import stage
from zsad.variants import FewShot

PATCHES_SWITCH = stage(PATCH_STAGE).opt_in  # the PipelineConfig switch of the patch tokens

from .aggregate import run_variants
from .configs import load_pipeline_config, variant_label
from .precompute import run_precompute
from .command_requests import AggregateRequest, CalibrateRequest, FilesRequest, PrecomputeRequest, PredictRequest
from .references import cache_references, reference_name
from .scores_csv import write_rows
from .thresholds import Decision, resolve_thresholds, save_thresholds



@dataclass(frozen=True)
class Scored:
    """What ``score_files`` did: ``items`` are (sample, its unit or None if it failed)."""

    items: list[tuple[Sample, Unit | None]]
    errors: list[Failure]
    skipped: list[Failure]
    variant_hash: str


def collect_files(paths: list[str]) -> tuple[list[Path], list[Failure], list[Failure]]:
    """Files named, and image files inside folders named: ``(files, errors, skipped)``. A path
    that does not exist is an error; a folder's non-image, hidden or dangling files are skipped."""
    files, errors, skipped = [], [], []
    for p in map(Path, paths):
        if p.is_dir():
            found, other = scan_folder(p)
            if not found:
                errors.append(Failure.of(None, "input", str(p), f"{p}: no image files in this folder"))
            files += found
            skipped += [Failure.of(None, "input", f, why) for f, why in other]
        elif p.is_file():
            files.append(p)
        else:
            errors.append(Failure.of(None, "input", str(p), f"{p}: no such file or folder"))
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, errors, skipped


def one_variant(variant: str, reference: str | None = None, name: str = "predict") -> AggregateConfig:
    """The one variant ``predict`` scores. With ``reference`` (a folder of normal images of the
    class) it is few-shot against exactly those images (all of them): they are cached as data set
    ``{name}-ref-{digest of their paths, sizes and times}`` (``zsad.flows.references``), so other
    references make another variant (with its own thresholds)."""
    axes = parse_axes(variant)  # the values are checked; the grid is not built before it is known to be one
    many = {k: len(v) for k, v in axes.items() if len(v) > 1}
    if many:
        raise ValueError(f"scores one variant; {variant!r} gives {', '.join(f'{k} {n} values' for k, n in many.items())}"
                         f" ({math.prod(many.values())} variants): give one value per field")
    agg = expand(axes)[0]
    if reference is None:
        return agg
    if agg.detector.together:
        raise ValueError(f"--reference gives few-shot references; a {agg.mode} variant compares the images scored "
                         "with each other and takes none: drop --reference or use mode=few-shot")
    patch = agg.patch if isinstance(agg.patch, FewShot) else FewShot()
    return agg.with_patch(dataclasses.replace(patch, reference=reference_name(reference, name), shots=0))


def score_files(request: FilesRequest, paths: tuple[str, ...], agg: AggregateConfig) -> Scored:
    """Precompute what is missing and aggregate variant ``agg`` (``one_variant``) for the given
    files (few-shot against the images of folder ``request.reference`` when given; a mutual
    variant compares the files with each other)."""
    r = request
    if r.against is not None and not agg.detector.against_batch:
        able = ", ".join(d.name for d in DETECTORS if d.against_batch)
        raise ValueError(f"--against scores new images against a cached batch ({able}); {variant_label(agg)!r} is "
                         f"{agg.mode}: use --variant mode={able.split(',')[0]}")
    cfg = load_pipeline_config(r.config, device=r.device,
                               patches=True if agg.detector.opt_in == PATCHES_SWITCH else None)
    vh = plan_stages(cfg).aggregate_hash(agg)
    files, errors, skipped = collect_files(list(paths))
    if r.reference is not None:
        errors += cache_references(r.reference, [r.class_name], r.store, cfg, agg.patch.reference, r.progress)
    ids = image_ids([f.as_posix() for f in files])
    samples = [Sample.unlabelled(f, r.class_name, i) for f, i in zip(files, ids)]
    units = [Unit.of(r.name, s) for s in samples]  # checks the names before any work
    done: set[Unit] = set()
    if samples:
        pre = run_precompute(PrecomputeRequest(store=r.store, name=r.name, progress=r.progress), samples=samples,
                             cfg=cfg)
        errors += pre.failed
        done = set(pre.done)
        if done and r.against is not None:  # MuSc: each file against the cached batch
            _against(r, cfg, agg, sorted(done))
        elif done:  # maps saved for the panels
            run_variants(AggregateRequest(store=r.store, dataset=r.name, config=r.config, configs=(agg,),
                                          units=tuple(sorted(done)), save_maps=True))
    return Scored([(s, u if u in done else None) for s, u in zip(samples, units)], errors, skipped, vh)


def _against(r: FilesRequest, cfg, agg: AggregateConfig, units: list[Unit]) -> None:
    """``--against``: the files scored as new members of the cached batch of their class."""
    from zsad.tasks.musc_new import score_against
    st, plan = open_store(r.store), plan_stages(cfg)
    batch = [u for u in st.list_units("musc_tokens", plan.hashes["musc_tokens"], r.against, [r.class_name])
             if u.split != "train"]
    if not batch:
        raise ValueError(f"{r.store}: data set {r.against!r} has no cached MuSc tokens of class {r.class_name!r}; "
                         f"run `zsad precompute --name {r.against} --config {r.config} ...` first")
    score_against(st, plan, agg, units, batch, r.against, device=r.device or "cpu")


def _error_row(err: Failure, class_name: str, status: str = "error") -> dict[str, Any]:
    return {"path": err.path, "class": class_name, "status": status, "stage": err.stage, "error": err.error}


def run_predict(request: PredictRequest) -> dict[str, Any]:
    """Score images (files or folders) of ``class_name``: ``scores.csv``, one PNG per image.

    Thresholds are resolved first (``--threshold auto`` without a stored one fails before any
    model runs). Returns a small summary: counts, paths, the thresholds used and the rows.
    """
    r = request
    class_name, agg = r.class_name, one_variant(r.variant, r.reference, r.name)
    vh = plan_stages(load_pipeline_config(r.config)).aggregate_hash(agg)
    decision = resolve_thresholds(r.threshold, r.pixel_threshold, open_store(r.store), vh, class_name, r.store)
    scored = score_files(r, r.paths, agg)
    errors, vh = scored.errors, scored.variant_hash
    out_dir = Path(r.out)
    st, rows = open_store(r.store), []
    png_names = short_names([s.path for s, _ in scored.items])
    for (sample, unit), png_name in zip(scored.items, png_names):
        if unit is None:
            continue
        png = out_dir / "heatmaps" / f"{png_name}.png" if r.heatmaps else None
        rows.append(_scored_row(st, sample, unit, vh, decision, png, variant_label(agg)))
    rows += [_error_row(e, class_name) for e in errors] + [_error_row(e, class_name, "skipped")
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


def _scored_row(st, sample: Sample, unit: Unit, vh: str, decision: Decision, png_path: Path | None,
                label: str) -> dict[str, Any]:
    key = unit_key("aggregate", vh, unit)
    score = float(st.read_attrs(key)["sample_score"])
    verdict = decide(score, decision.image)
    row = {"path": sample.path, "class": sample.class_name, "status": "scored", "sample_score": score,
           "decision": verdict, **decision.as_row(), "variant": label, "variant_hash": vh, "heatmap": ""}
    if png_path is not None:
        row["heatmap"] = str(save_png(unit_panel(st, sample, unit, vh, decision), png_path))
    return row


def unit_panel(st, sample: Sample, unit: Unit, vh: str, decision: Decision) -> bytes:
    """The prediction panel (PNG bytes) of a scored file: its image, the map stored by
    ``score_files`` and the verdict at ``decision``'s thresholds, titled by the file's name."""
    key = unit_key("aggregate", vh, unit)
    return panel_png(image_hw3=load_image(sample.path), pixel_map_hw=st.read_array(key, PIXEL_MAP),
                     class_name=sample.class_name, score=float(st.read_attrs(key)["sample_score"]),
                     threshold=decision.image, pixel_threshold=decision.pixel, caption=Path(sample.path).name)


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
    agg = one_variant(r.variant, r.reference, r.name)
    scored = score_files(r, r.good, agg)
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
    return {"class": class_name, "variant_hash": vh, "variant": to_jsonable(agg),
            "n_images": len(ev.labels), "n_failed": len(errors), "fpr": fpr, "image_threshold": t.value,
            "pixel_threshold": found["pixel"].get("fpr") and found["pixel"]["fpr"].value,
            "failed": [e.record() for e in errors]}

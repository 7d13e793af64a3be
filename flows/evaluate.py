"""Flow ``evaluate``: per-class and mean metrics of each variant, as CSV/JSON and the seed's tables."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from zsad.config import AggregateConfig
from zsad.evaluation import evaluate_classes, seed_table
from zsad.variant_fields import square_protocol
from zsad.stores import StageStore, open_store

from .aggregate import VariantOutcome, run_variants
from .command_requests import EvaluateRequest
from .thresholds import save_thresholds

Metrics = dict[str, dict[str, float]]  # class (and "mean") -> metric name -> value


@dataclass(frozen=True)
class VariantResult:
    """One variant's evaluation: its label and config, metrics per class and mean, and the
    decision thresholds per class (``{level}_{kind}`` -> value). Its ``record`` is the variant's
    entry of ``metrics.json``; ``from_record`` reads one back (``zsad report --results``)."""

    label: str
    config: dict[str, Any]
    metrics: Metrics | None
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "config": self.config, "metrics": self.metrics, "thresholds": self.thresholds}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "VariantResult":
        return cls(rec["label"], rec["config"], rec["metrics"], rec.get("thresholds", {}))


def variant_results(meta: VariantOutcome, st: StageStore, dataset: str, variant_hash: str, fpr: float | None,
                    resized: bool) -> VariantResult:
    """One variant's metrics per class (plus the mean) from the evaluators ``run_variants``
    filled, and the decision thresholds each class's images give (also stored under the
    variant unless ``st`` is read-only; no pixel thresholds when the maps were ``resized`` for
    the metrics: they would not fit the full-size maps ``predict`` draws)."""
    evaluators = meta.evaluators
    if not evaluators:
        raise ValueError(f"{st.url}: the images of {dataset!r} have no labels, so there is nothing to evaluate; "
                         "`zsad predict` scores unlabelled images and `zsad report` ranks them")
    thresholds = {}
    for cls, ev in sorted(evaluators.items()):
        found = ev.thresholds(dataset, fpr)
        if resized:
            found["pixel"] = {}  # thresholds of resized maps would not fit the full-size maps predict draws
        if not st.read_only:
            save_thresholds(st, variant_hash, cls, found)
        thresholds[cls] = {f"{lvl}_{kind}": t.value for lvl, by_kind in found.items() for kind, t in by_kind.items()}
    return VariantResult(meta.label, meta.config, evaluate_classes(evaluators), thresholds)


def write_results(out_dir: Path, results: dict[str, VariantResult], dataset: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({vh: v.record() for vh, v in results.items()}, indent=2,
                                                     default=lambda v: None))
    rows = [{"variant": v.label, "variant_hash": vh, "class": cls, **m,
             **{f"threshold_{k}": t for k, t in v.thresholds.get(cls, {}).items()}}
            for vh, v in results.items() for cls, m in v.metrics.items()]
    fields = ["variant", "variant_hash", "class"] + sorted({k for r in rows for k in r} - {"variant", "variant_hash",
                                                                                              "class"})
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows)
    md = []
    for vh, v in results.items():
        for level in ("sample", "pixel"):
            md += [f"### {v.label} ({vh}): {level}-level F1-max (%)", "", seed_table(v.metrics, level), ""]
        note = AggregateConfig.from_json(v.config).detector.published_note(dataset)
        md += [note, ""] if note else []
    (out_dir / "tables.md").write_text("\n".join(md))
    return [out_dir / "metrics.json", out_dir / "metrics.csv", out_dir / "tables.md"]


def _resized(r: EvaluateRequest, meta: VariantOutcome) -> bool:
    """Whether the variant's pixel metrics came from resized maps (``--pixel-size``, or MuSc's
    protocol for a MuSc variant)."""
    detector = AggregateConfig.from_json(meta.config).detector
    return r.pixel_size is not None or (square_protocol(r.protocol) and detector.square_protocol)


def run_evaluate(request: EvaluateRequest) -> dict[str, VariantResult]:
    """F1-max, AUROC, AP (sample, pixel) and AUPRO in one aggregation pass (maps are streamed, not
    stored unless ``save_maps``), and each class's decision thresholds (F1-max, and at ``fpr`` on
    its normal images) stored under the variant. ``read_only`` writes nothing to the store (the
    metrics and thresholds go only to ``out_dir``). ``device``: ``cuda`` pastes and counts the
    maps on the GPU. ``root``: the data set is precomputed first (all of it: metrics over part of
    a data set would not compare with published ones)."""
    r = request
    if r.root:
        _precompute_first(r)
    meta = run_variants(r)
    st = open_store(r.store, read_only=r.read_only)
    results = {vh: variant_results(m, st, r.dataset, vh, r.fpr, _resized(r, m)) for vh, m in meta.items()}
    write_results(Path(r.out_dir), results, r.dataset)
    if r.echo:
        for vh, v in results.items():
            print(f"\n{v.label} ({vh})")
            for level in ("sample", "pixel"):
                print(f"{level}-level F1-max (%):\n" + seed_table(v.metrics, level))
            detector = AggregateConfig.from_json(v.config).detector
            note = detector.published_note(r.dataset)
            if note:
                square = square_protocol(r.protocol) or not detector.square_protocol
                print(note + ("" if square else " (published at the square protocol: --protocol musc)"))
        where = "not stored (--read-only)" if r.read_only else f"stored in {r.store} (thresholds/<variant>/<class>)"
        print(f"\nthresholds {where}; metrics in {r.out_dir}")
    return results


def _precompute_first(r: EvaluateRequest) -> None:
    from .command_requests import PrecomputeRequest
    from .precompute import run_precompute
    pre = run_precompute(PrecomputeRequest(**{f.name: getattr(r, f.name) for f in dataclasses.fields(PrecomputeRequest)
                                              if hasattr(r, f.name)}))
    pre.tell()
    if pre.failed:
        raise ValueError("some images of the data set could not be computed (listed above); fix or remove them: "
                         "metrics over part of a data set would not compare with published ones")


def evaluate_records(request: EvaluateRequest) -> dict[str, dict[str, Any]]:
    """The ``evaluate`` command: ``run_evaluate``'s records per variant hash."""
    return {vh: v.record() for vh, v in run_evaluate(request).items()}


__all__ = ["evaluate_records", "run_evaluate", "variant_results", "write_results", "VariantResult"]

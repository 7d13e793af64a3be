"""``zsad report``: self-contained HTML pages (Jinja2 templates in ``flows/templates``) with
their PNGs beside them.

``report.html`` is one variant's report: failed images, the seed's F1-max tables and every
metric per class, per class a matplotlib figure (precision-recall and ROC at image and pixel
level with the F1-max points, the score histogram with the threshold), the best, missed and
false-alarm images in anomalib's layout, and how the numbers were made (stage hashes and
configs, library versions). Unlabelled data gets a score-ranked gallery instead of metrics.
With several variants, ``variants.html`` ranks them all (sortable tables, mean and per class,
and small multiples of the mean metrics per parameter) and ``report.html`` is the best one's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Any

from zsad.stores import open_store
from zsad.tasks.failures import list_failures
from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig, to_jsonable
from zsad.evaluation import evaluate_classes, seed_rows
from zsad.sweep import KINDS, SCALE_NAMES

from .aggregate import VariantOutcome, run_variants
from .evaluate import VariantResult
from .command_requests import AggregateRequest, ReportRequest
from .configs import load_pipeline_config, resolve_variants, stored_variants, variant_label
from .templates import missing as _missing, template_env
from .report_parts import class_chart, example_panel, gallery, pick_examples, png_uri, provenance

METRICS = ("sample_f1_max", "sample_auroc", "sample_ap", "pixel_f1_max", "pixel_auroc", "pixel_ap", "pixel_aupro")
RANK_BY = ("sample_f1_max", "pixel_f1_max")  # the seed's headline metrics, in this order
EFFECTS = ("sample_f1_max", "sample_auroc", "pixel_f1_max", "pixel_aupro")  # the small multiples' rows


def render(template: str, path: Path, **context: Any) -> Path:
    """Render ``flows/templates/<template>`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_env().get_template(template).render(**context))
    return path


@dataclass(frozen=True)
class Site:
    """What every page of one report shares: the store and plan it reads, the data set and
    config named, the folder it is written to, its navigation and how many variants it ranks."""

    st: Any
    plan: Any
    dataset: str
    config: str
    out_dir: Path
    nav: list
    n_variants: int


def build_report(request: ReportRequest) -> Path:
    """Write the report of ``variants`` (a grammar, label(s) or stored hash(es): see
    ``resolve_variants``) and return its first page: ``variants.html`` when there are several,
    else ``report.html``.

    ``results`` (a ``metrics.json`` written by ``zsad evaluate``) ranks the variants from those
    metrics instead of recomputing them; only the best variant is aggregated again for its panels.
    Nothing is written to the store (scores missing there are computed, not kept).
    """
    r = request
    dataset, config = r.dataset, r.config
    out_dir, plan, st = Path(r.out), plan_stages(load_pipeline_config(config)), open_store(r.store)
    base = AggregateRequest(store=r.store, dataset=dataset, config=config, evaluate=True, read_only=True)
    if r.results is not None:
        ranked = _from_results(Path(r.results), plan)
        meta = {}
    else:
        meta = run_variants(base.replace(configs=tuple(resolve_variants(r.variants, stored_variants(st.stages())))))
        ranked = {vh: VariantResult(m.label, m.config, _metrics(m)) for vh, m in meta.items()}
    order = sorted(ranked, key=lambda vh: _rank_key(ranked[vh].metrics))
    if len(order) > 1 and any(ranked[vh].metrics is None for vh in order):
        raise ValueError(f"{dataset!r} has no labels: variants can only be compared on labelled images; "
                         "report one variant (--variant seed) to rank its images")
    best = order[0]
    agg = AggregateConfig.from_json(ranked[best].config)
    if best not in meta:
        meta = run_variants(base.replace(configs=(agg,)))
    nav = [("report", "report.html")] + ([("variants", "variants.html")] if len(order) > 1 else [])
    measured = ranked[best].metrics if r.results is None else None  # this pass's metrics: not computed again
    site = Site(st, plan, dataset, config, out_dir, nav, len(order))
    report = _variant_report(site, agg, best, meta[best], measured)
    if len(order) == 1:
        return report
    return _variants_page(ranked, order, dataset, config, out_dir, nav)


def _metrics(meta: VariantOutcome) -> dict[str, dict[str, float]] | None:
    evaluators = meta.evaluators
    return evaluate_classes(evaluators) if evaluators else None


def _rank_key(metrics: dict[str, dict[str, float]] | None) -> tuple[float, ...]:
    mean = (metrics or {}).get("mean", {})
    return tuple(-1.0 if _missing(mean.get(k)) else -mean[k] for k in RANK_BY)


def _from_results(path: Path, plan) -> dict[str, VariantResult]:
    """Variants and metrics from ``zsad evaluate``'s ``metrics.json``, checked against the config."""
    try:
        data = json.loads(path.read_text())
        out = {vh: VariantResult.from_record(v) for vh, v in data.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a metrics.json written by `zsad evaluate` ({exc})") from None
    for vh, v in out.items():
        if plan.aggregate_hash(AggregateConfig.from_json(v.config)) != vh:
            raise ValueError(f"{path}: variant {vh} was evaluated with another pipeline config than this one; "
                             "pass the --config used by `zsad evaluate`")
    return {vh: dataclasses.replace(v, metrics={c: {k: (math.nan if x is None else x) for k, x in m.items()}
                                                for c, m in v.metrics.items()}) for vh, v in out.items()}


def _variant_report(site: Site, agg: AggregateConfig, vh: str, meta: VariantOutcome,
                    metrics: dict[str, dict[str, float]] | None = None) -> Path:
    st, plan, dataset, out_dir, n_variants = site.st, site.plan, site.dataset, site.out_dir, site.n_variants
    config, nav = site.config, site.nav
    evaluators, rows_by_class, contexts = meta.evaluators, meta.rows, meta.contexts
    ctx = {"title": f"zsad report — {dataset}", "nav": nav, "dataset": dataset, "label": variant_label(agg),
           "variant_hash": vh, "config": config, "n_images": meta.n_images, "n_variants": n_variants,
           "variants_page": "variants.html" if n_variants > 1 else None,
           "failures": list_failures(st, plan.hashes["image"], dataset),
           "provenance": provenance(st, plan, to_jsonable(agg), vh)}
    if not evaluators:  # no labels (a plain folder): rank the images instead of measuring
        return render("report.html.j2", out_dir / "report.html", gallery=gallery(st, plan, agg, rows_by_class,
                                                                                  out_dir, contexts=contexts), **ctx)
    results = dict(metrics or _metrics(meta))
    total = sum(r["n_images"] for c, r in results.items() if c != "mean")
    results["mean"] = {**results["mean"], "n_images": total}  # all images, not a mean
    thresholds = {cls: ev.thresholds(dataset, None) for cls, ev in evaluators.items()}
    labelled = sorted(c for c in rows_by_class if c in evaluators)
    charts = [class_chart(c, rows_by_class[c], evaluators[c], thresholds[c], out_dir) for c in labelled]
    examples = [(c, [example_panel(st, plan, agg, row, out_dir, caption, thresholds.get(c), contexts)
                     for caption, row in pick_examples(rows_by_class[c])]) for c in sorted(rows_by_class)]
    return render("report.html.j2", out_dir / "report.html", gallery=None, results=results, metric_names=METRICS,
                  seed_tables=[("Sample level", seed_rows(results, "sample")),
                               ("Pixel level", seed_rows(results, "pixel"))],
                  charts=charts, examples=examples, **ctx)


def _shown(param: str, value: Any) -> str:
    if param == "logit_scale":
        named = [name for name, v in SCALE_NAMES.items() if v == value]
        return named[0] if named else f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _distinct_params(params: list[str], configs: list[dict[str, Any]]) -> list[str]:
    """``params`` without those that only rename an earlier one (a one-to-one map between their
    values, e.g. the neighbourhood each mode defaults to): one column and one chart each."""
    def values(p: str) -> list[str]:
        return [json.dumps(c.get(p)) for c in configs]
    kept: list[str] = []
    for p in params:
        if not any(len(set(zip(values(q), values(p)))) == len(set(values(q))) == len(set(values(p))) for q in kept):
            kept.append(p)
    return kept


def _variants_page(ranked: dict[str, Any], order: list[str], dataset: str, config: str, out_dir: Path,
                   nav: list) -> Path:
    from zsad.plots import variant_small_multiples
    seed = to_jsonable(AggregateConfig())
    params = _distinct_params([p for p in KINDS if len({json.dumps(ranked[vh].config.get(p)) for vh in order}) > 1],
                              [ranked[vh].config for vh in order])
    classes = sorted({c for vh in order for c in ranked[vh].metrics if c != "mean"})
    rows = []
    for rank, vh in enumerate(order, 1):
        v = ranked[vh]
        rows.append({"rank": rank, "hash": vh, "label": v.label, "is_seed": v.config == seed,
                     **{p: _shown(p, v.config.get(p)) for p in params},
                     **{m: v.metrics["mean"].get(m, math.nan) for m in METRICS},
                     "per_class": {c: {m: v.metrics.get(c, {}).get(m, math.nan) for m in METRICS}
                                   for c in classes}})
    chart = png_uri(variant_small_multiples(rows, params or ["rank"], list(EFFECTS)), out_dir / "charts" /
                    "variants.png")
    return render("variants.html.j2", out_dir / "variants.html", title=f"zsad variants — {dataset}", nav=nav,
                  dataset=dataset, config=config, variants=rows, params=params, classes=classes, chart=chart,
                  metric_names=METRICS, best_report="report.html", best_label=rows[0]["label"])

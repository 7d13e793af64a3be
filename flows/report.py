"""``zsad report``: one self-contained HTML file (plus the PNGs beside it) per run.

Sections: failed images, per-class tables in the seed's layout and all metrics, per class a
matplotlib figure (precision-recall and ROC at image and pixel level with the F1-max points,
the score histogram with the threshold), and for each class the highest-scoring anomalous image
(best), the lowest-scoring anomalous image (missed) and the highest-scoring normal image (false
alarm) in anomalib's layout. Unlabelled data gets a score-ranked gallery instead.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

import numpy as np

from stores import Unit, unit_key
from tasks.aggregate import pixel_map
from tasks.errors import list_failures
from tasks.plan import plan_stages
from tasks.runtime import open_store
from zsad.config import AggregateConfig
from zsad.datasets import ground_truth, load_image
from zsad.evaluation import seed_table, with_mean
from zsad.plots import class_charts, prediction_panel, save_png
from zsad.predict import describe
from zsad.thresholds import decide

from .aggregate import run_variants
from .configs import load_pipeline_config, variant_label

METRICS = ("sample_f1_max", "sample_auroc", "sample_ap", "pixel_f1_max", "pixel_auroc", "pixel_ap", "pixel_aupro")
CSS = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
       "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right}th{background:#eee}"
       "figure{display:inline-block;margin:6px}figcaption{font-size:12px}img{max-width:100%}.chart{margin:4px}")


def _png_file(data: bytes, path: Path) -> str:
    """Write PNG bytes beside the report and return them as a data URI (the HTML is self-contained)."""
    save_png(data, path)
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _metrics_table(results: dict[str, dict[str, float]]) -> str:
    head = "<tr><th>class</th>" + "".join(f"<th>{m}</th>" for m in METRICS) + "<th>images</th></tr>"
    rows = []
    for cls, m in results.items():
        cells = "".join("<td>-</td>" if math.isnan(m.get(k, math.nan)) else f"<td>{100 * m[k]:.1f}</td>"
                        for k in METRICS)
        rows.append(f"<tr><th>{escape(cls)}</th>{cells}<td>{m.get('n_images', '')}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _md_table_html(md: str) -> str:
    lines = [line.strip("|").split("|") for line in md.splitlines() if not line.startswith("|---")]
    head = "".join(f"<th>{escape(c.strip())}</th>" for c in lines[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c.strip())}</td>" for c in row) + "</tr>" for row in lines[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _examples(rows: list[dict]) -> list[tuple[str, dict]]:
    anomalous = sorted((r for r in rows if r["label"] == 1), key=lambda r: r["score"])
    normal = sorted((r for r in rows if r["label"] == 0), key=lambda r: r["score"])
    picks = []
    if anomalous:
        picks += [("best: highest-scoring anomalous", anomalous[-1]), ("missed: lowest-scoring anomalous", anomalous[0])]
    if normal:
        picks.append(("false alarm: highest-scoring normal", normal[-1]))
    return picks


def _example_panel(st, hashes, agg, row, out: Path, caption: str, found: dict | None = None) -> str:
    """anomalib's layout: image with ground truth | heatmap on [0, 1] with a colour bar | predicted mask."""
    unit = Unit(*row["unit"].split("/"))
    image = st.read_attrs(unit_key("image", hashes["image"], unit))
    img = load_image(image["path"])
    mask = ground_truth(image["mask_path"], img.shape[:2])
    pixel = pixel_map(st.url, hashes, agg, row["unit"])  # computed now: variants store no maps
    t_img, t_pix = ((found or {}).get(level, {}).get("f1") for level in ("image", "pixel"))
    threshold = t_img.value if t_img else None
    verdict = decide(row["score"], threshold)
    png = prediction_panel(img, pixel, f"{caption} — {unit.image_id}: "
                           f"{describe(unit.class_name, row['score'], threshold, verdict)}", verdict,
                           t_pix.value if t_pix else None, mask)
    src = _png_file(png, out / "examples" / unit.class_name / f"{unit.image_id}.png")
    return (f'<figure><img src="{src}" alt="{escape(unit.image_id)}"><figcaption>{escape(caption)} — '
            f'{escape(unit.image_id)}, score {row["score"]:.3f}; thresholds: the class\'s F1-max ones'
            f'</figcaption></figure>')


def build_report(store: str, dataset: str, config: str = "tiny", out: str = "zsad-report",
                 agg: AggregateConfig = AggregateConfig()) -> Path:
    """Write ``out/report.html`` (self-contained) and its PNGs; returns the HTML path."""
    out_dir = Path(out)
    plan = plan_stages(load_pipeline_config(config))
    st, vh, hashes = open_store(store), plan.aggregate_hash(agg), plan.hashes
    meta = run_variants(store, dataset, config, [agg], evaluate=True)[vh]
    evaluators, rows_by_class = meta.get("evaluators", {}), meta["rows"]
    parts = [f"<h1>zsad report — {escape(dataset)}</h1>",
             f"<p>variant <b>{escape(variant_label(agg))}</b> (aggregate hash {vh}); config <b>{escape(config)}</b></p>",
             "<details><summary>stage hashes</summary><table><tr><th>stage</th><th>hash</th></tr>"
             + "".join(f"<tr><td>{escape(k)}</td><td><code>{escape(v)}</code></td></tr>" for k, v in hashes.items())
             + "</table></details>"]
    parts += _failures(list_failures(st, hashes["image"], dataset))
    if not evaluators:  # no labels (a plain folder): rank the images instead of measuring
        return _write(out_dir, dataset, parts + _gallery(st, hashes, agg, rows_by_class, out_dir))
    results = with_mean({c: e.result() for c, e in sorted(evaluators.items())})
    parts += ["<h2>F1-max in the seed's layout (%)</h2>",
             "<h3>Sample level</h3>" + _md_table_html(seed_table(results, "sample")),
             "<h3>Pixel level</h3>" + _md_table_html(seed_table(results, "pixel")),
             "<h2>All metrics (%)</h2>", _metrics_table(results),
             "<h2>Curves and score histograms</h2><p>Precision-recall (F1-max points marked) and ROC at image "
             "and pixel level; image scores of normal and anomalous images with the F1-max threshold.</p>"]
    thresholds = {cls: ev.thresholds(dataset, None) for cls, ev in evaluators.items()}
    for cls, rows in sorted(rows_by_class.items()):
        if cls in evaluators:
            parts.append(_charts(cls, rows, evaluators[cls], thresholds[cls], out_dir))
    parts.append("<h2>Best and worst images</h2>")
    for cls, rows in sorted(rows_by_class.items()):
        parts.append(f"<h3>{escape(cls)}</h3>")
        parts += [_example_panel(st, hashes, agg, row, out_dir, caption, thresholds.get(cls))
                  for caption, row in _examples(rows)]
    return _write(out_dir, dataset, parts)


def _charts(cls: str, rows: list[dict], ev, found: dict, out_dir: Path) -> str:
    labelled = [r for r in rows if r["label"] >= 0]
    pixel_pr = pixel_roc = None
    if ev.pixels is not None and ev.pixels.pos.any():  # a point per float16 value: thin for drawing
        (p, r), (f, t) = ev.pixels.pr_curve(), ev.pixels.roc_curve()
        pick = np.unique(np.linspace(0, r.size - 1, 512).astype(int))
        pixel_pr, pixel_roc = (p[pick], r[pick]), (f[pick], t[pick])
    threshold = found["image"].get("f1")
    png = class_charts(cls, np.array([r["label"] for r in labelled]), np.array([r["score"] for r in labelled]),
                       pixel_pr, pixel_roc, threshold.value if threshold else None)
    src = _png_file(png, out_dir / "charts" / f"{cls}.png")
    return f'<img class="chart" src="{src}" alt="charts of {escape(cls)}">'


def _failures(failed: list[dict]) -> list[str]:
    """The images that could not be scored, with the stage and the reason."""
    if not failed:
        return []
    rows = "".join(f"<tr><td style='text-align:left'>{escape(f['path'])}</td><td>{escape(f['stage'])}</td>"
                   f"<td style='text-align:left'>{escape(f['error'])}</td></tr>" for f in failed)
    return [f"<h2>Failed images ({len(failed)})</h2><p>Not scored and not in the metrics; fixed files are "
            "computed on the next <code>zsad precompute</code>.</p>"
            f"<table><tr><th>file</th><th>stage</th><th>reason</th></tr>{rows}</table>"]


def _gallery(st, hashes, agg, rows_by_class: dict[str, list[dict]], out_dir: Path, top: int = 12) -> list[str]:
    """Unlabelled images: every score in a ranked table, the ``top`` highest as panels."""
    parts = ["<p>These images have no labels: they are ranked by anomaly score, highest first.</p>"]
    for cls, rows in sorted(rows_by_class.items()):
        ranked = sorted(rows, key=lambda r: -r["score"])
        paths = [st.read_attrs(unit_key("image", hashes["image"], Unit(*r["unit"].split("/"))))["path"] for r in ranked]
        table = "".join(f"<tr><td>{i}</td><td style='text-align:left'>{escape(path)}</td>"
                        f"<td>{r['score']:.4f}</td></tr>" for i, (r, path) in enumerate(zip(ranked, paths), 1))
        parts += [f"<h2>{escape(cls)}: {len(ranked)} images</h2>",
                  f"<table><tr><th>rank</th><th>image</th><th>score</th></tr>{table}</table>"]
        parts += [_example_panel(st, hashes, agg, r, out_dir, f"rank {i}") for i, r in enumerate(ranked[:top], 1)]
    return parts


def _write(out_dir: Path, dataset: str, parts: list[str]) -> Path:
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>zsad report — {escape(dataset)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(html)
    return path

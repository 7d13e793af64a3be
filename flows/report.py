"""``zsad report``: one self-contained HTML file (plus the PNGs beside it) per run.

Sections: per-class tables in the seed's layout and all metrics, precision-recall curves,
score histograms (normal vs anomalous), and for each class the highest-scoring anomalous
image (best), the lowest-scoring anomalous image (missed) and the highest-scoring normal image
(false alarm), each shown as image, ground truth, heatmap overlay, foreground and tile boxes.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import precision_recall_curve

from stores import Unit, unit_key
from tasks.aggregate import pixel_map
from tasks.errors import list_failures
from tasks.plan import plan_stages
from tasks.runtime import open_store
from zsad.config import AggregateConfig
from zsad.datasets import ground_truth, load_image
from zsad.evaluation import seed_table, with_mean
from zsad.svg import histogram, line_chart
from zsad.visualize import draw_boxes, outline, overlay, panel

from .aggregate import run_variants
from .configs import load_pipeline_config, variant_label

METRICS = ("sample_f1_max", "sample_auroc", "sample_ap", "pixel_f1_max", "pixel_auroc", "pixel_ap", "pixel_aupro")
CSS = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
       "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right}th{background:#eee}"
       "figure{display:inline-block;margin:6px}figcaption{font-size:12px}img{max-width:100%}.chart{margin:4px}")


def _png(arr: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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


def _example_panel(st, hashes, agg, row, out: Path, caption: str) -> str:
    unit = Unit(*row["unit"].split("/"))
    image = st.read_attrs(unit_key("image", hashes["image"], unit))
    img = load_image(image["path"])
    mask = ground_truth(image["mask_path"], img.shape[:2])
    pixel = pixel_map(st.url, hashes, agg, row["unit"])  # computed now: variants store no maps
    fg = st.read_array(unit_key("foreground", hashes["foreground"], unit), "mask_hw")
    boxes = st.read_array(unit_key("tiles", hashes["tiles"], unit), "boxes_xyxy")
    fg_img = np.where(fg[..., None], img, (img * 0.25).astype(np.uint8))
    pic = panel([img, outline(img, mask), overlay(img, pixel, vmax=1.0), fg_img, draw_boxes(img, boxes)])
    src = _png(pic, out / "examples" / unit.class_name / f"{unit.image_id}.png")
    return (f'<figure><img src="{src}" alt="{escape(unit.image_id)}"><figcaption>{escape(caption)} — '
            f'{escape(unit.image_id)}, score {row["score"]:.3f}; image | ground truth | heatmap | foreground | tiles'
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
             f"<p>variant <b>{escape(variant_label(agg))}</b> ({vh}); config <b>{escape(config)}</b>; "
             f"stage hashes {escape(str(hashes))}</p>"]
    parts += _failures(list_failures(st, hashes["image"], dataset))
    if not evaluators:  # no labels (a plain folder): rank the images instead of measuring
        return _write(out_dir, dataset, parts + _gallery(st, hashes, agg, rows_by_class, out_dir))
    results = with_mean({c: e.result() for c, e in sorted(evaluators.items())})
    parts += ["<h2>F1-max in the seed's layout (%)</h2>",
             "<h3>Sample level</h3>" + _md_table_html(seed_table(results, "sample")),
             "<h3>Pixel level</h3>" + _md_table_html(seed_table(results, "pixel")),
             "<h2>All metrics (%)</h2>", _metrics_table(results), "<h2>Precision-recall curves</h2>"]
    sample_pr, pixel_pr = {}, {}
    for cls, rows in sorted(rows_by_class.items()):
        labels = np.array([r["label"] for r in rows])
        if labels.any():
            p, r, _ = precision_recall_curve(labels, np.array([r_["score"] for r_ in rows]))
            sample_pr[cls] = (r[::-1], p[::-1])
        ev = evaluators.get(cls)  # None for a class with unlabelled images only
        if ev is not None and ev.pixels is not None and ev.pixels.pos.sum():
            p, r = ev.pixels.pr_curve()  # a point per float16 value: thin it for drawing
            pick = np.unique(np.linspace(0, r.size - 1, 512).astype(int))
            pixel_pr[cls] = (r[pick], p[pick])
    parts += [line_chart(sample_pr, "sample level", "recall", "precision"),
              line_chart(pixel_pr, "pixel level", "recall", "precision"), "<h2>Score histograms</h2>"]
    for cls, rows in sorted(rows_by_class.items()):
        parts.append(histogram({"normal": np.array([r["score"] for r in rows if r["label"] == 0]),
                                "anomalous": np.array([r["score"] for r in rows if r["label"] == 1])}, cls))
    parts.append("<h2>Best and worst images</h2>")
    for cls, rows in sorted(rows_by_class.items()):
        parts.append(f"<h3>{escape(cls)}</h3>")
        parts += [_example_panel(st, hashes, agg, row, out_dir, caption) for caption, row in _examples(rows)]
    return _write(out_dir, dataset, parts)


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

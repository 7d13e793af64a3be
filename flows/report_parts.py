"""The pieces of ``zsad report`` as plain data for its Jinja2 templates: example panels, charts,
the unlabelled gallery and the run's provenance (stage hashes, configs, library versions).

Figures are written beside the HTML and embedded as data URIs (the HTML is self-contained).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from zsad.stores import unit_key
from zsad.stores.options import library_versions
from zsad.stores.schema import BOXES
from zsad.tasks.aggregate import Row, pixel_map
from zsad.tasks.fused import ImageFacts
from zsad.datasets import known_ground_truth, load_image
from zsad.plots import class_charts, save_png
from zsad.predict import panel_png


def png_uri(data: bytes, path: Path) -> str:
    """Write PNG bytes to ``path`` and return them as a data URI."""
    save_png(data, path)
    return "data:image/png;base64," + base64.b64encode(data).decode()


def pick_examples(rows: list[Row]) -> list[tuple[str, Row]]:
    """The highest- and lowest-scoring anomalous images and the highest-scoring normal one."""
    anomalous = sorted((r for r in rows if r.label == 1), key=lambda r: r.sample_score)
    normal = sorted((r for r in rows if r.label == 0), key=lambda r: r.sample_score)
    picks = []
    if anomalous:
        picks += [("highest-scoring anomalous", anomalous[-1]), ("lowest-scoring anomalous", anomalous[0])]
    if normal:
        picks.append(("highest-scoring normal", normal[-1]))
    return picks


def outcome(label: int, score: float, threshold: float | None) -> str:
    """What an example is at ``threshold``: a detection, a miss, a false alarm or a correct pass.

    Example:
        >>> outcome(0, 0.301, 0.302), outcome(0, 0.31, 0.302), outcome(1, 0.2, 0.3), outcome(1, 0.2, None)
        ('correctly passed', 'false alarm', 'missed', 'no threshold')
    """
    if threshold is None or label < 0:
        return "no threshold" if threshold is None else "unlabelled"
    flagged = score >= threshold
    return {(1, True): "detected", (1, False): "missed", (0, True): "false alarm", (0, False): "correctly passed"}[
        (label, flagged)]


def example_panel(st, plan, agg, row, out: Path, caption: str, found: dict | None = None,
                  contexts: dict[str, dict] | None = None) -> dict[str, str]:
    """anomalib's layout: image with ground truth | heatmap on [0, 1] with a colour bar | predicted
    mask at the class's stored pixel threshold. Returns ``{src, alt, caption}``. ``contexts``:
    class -> patch context of a few-shot or mutual variant (``run_variants``' meta)."""
    unit = row.unit
    image = st.read_attrs(unit_key("image", plan.hashes["image"], unit))
    img = load_image(image["path"])
    mask = known_ground_truth(image["label"], image["mask_path"], img.shape[:2], ImageFacts.from_attrs(image).orientation)
    pixel = pixel_map(st, plan, agg, row.unit,  # computed now: variants store no maps
                      (contexts or {}).get(unit.class_name))
    t_img, t_pix = ((found or {}).get(level, {}).get("f1") for level in ("image", "pixel"))
    if found is not None:  # a labelled example: titled by what it is at the threshold
        caption = f"{caption} ({outcome(row.label, row.sample_score, t_img.value if t_img else None)})"
    boxes = st.read_array(unit_key("tiles", plan.hashes["tiles"], unit), BOXES)
    png = panel_png(image_hw3=img, pixel_map_hw=pixel, class_name=unit.class_name, score=row.sample_score,
                    threshold=t_img.value if t_img else None, pixel_threshold=t_pix.value if t_pix else None,
                    caption=f"{caption} — {unit.image_id}", gt_mask_hw=mask, boxes_xyxy=boxes)
    src = png_uri(png, out / "examples" / unit.class_name / f"{unit.image_id}.png")
    return {"src": src, "alt": unit.image_id, "caption": f"{caption} — {unit.image_id}, score {row.sample_score:.3f}"}


def class_chart(cls: str, rows: list[Row], ev, found: dict, out_dir: Path) -> dict[str, str]:
    """The class's PR/ROC curves and score histogram (``zsad.plots.class_charts``) as ``{cls, src}``."""
    labelled = [r for r in rows if r.label >= 0]
    pixel_pr = pixel_roc = None
    if ev.pixels is not None and ev.pixels.pos.any():  # a point per float16 value: thin for drawing
        (p, r), (f, t) = ev.pixels.pr_curve(), ev.pixels.roc_curve()
        pick = np.unique(np.linspace(0, r.size - 1, 512).astype(int))
        pixel_pr, pixel_roc = (p[pick], r[pick]), (f[pick], t[pick])
    threshold = found["image"].get("f1")
    png = class_charts(cls, np.array([r.label for r in labelled]), np.array([r.sample_score for r in labelled]),
                       pixel_pr, pixel_roc, threshold.value if threshold else None)
    return {"cls": cls, "src": png_uri(png, out_dir / "charts" / f"{cls}.png")}


def gallery(st, plan, agg, rows_by_class: dict[str, list[Row]], out_dir: Path, top: int = 12,
            contexts: dict[str, dict] | None = None) -> list[dict]:
    """Unlabelled images, per class: every score ranked (``rows``: rank, path, score) and the
    ``top`` highest as panels."""
    out = []
    for cls, rows in sorted(rows_by_class.items()):
        ranked = sorted(rows, key=lambda r: -r.sample_score)
        paths = [st.read_attrs(unit_key("image", plan.hashes["image"], r.unit))["path"] for r in ranked]
        out.append({"cls": cls, "rows": [{"rank": i, "path": p, "score": r.sample_score}
                                         for i, (r, p) in enumerate(zip(ranked, paths), 1)],
                    "panels": [example_panel(st, plan, agg, r, out_dir, f"rank {i}", contexts=contexts)
                               for i, r in enumerate(ranked[:top], 1)]})
    return out


def _flat(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Nested config -> ``(dotted.key, readable value)`` rows; lists of texts joined."""
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flat(f"{prefix}.{k}" if prefix else k, v)]
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value) if all(not isinstance(v, (dict, list)) for v in value) \
            else json.dumps(value)
        return [(prefix, f"[{len(value)}] {text}")]
    return [(prefix, "—" if value is None else str(value))]


def provenance(st, plan, agg_config: dict[str, Any], variant_hash: str) -> dict[str, Any]:
    """Stage hashes with their configs and weights, and library versions now vs. recorded.

    Returns ``{"stages": [{stage, hash, weights, rows: [(key, value)]}], "versions": [{package,
    now, recorded}]}``; ``recorded`` lists the versions the store's stage groups were created with.
    """
    stages = [{"stage": s, "hash": h, "weights": plan.weights.get(s) or "—", "rows": _flat("", plan.configs[s])}
              for s, h in plan.hashes.items()]
    stages.append({"stage": "aggregate", "hash": variant_hash, "weights": "—", "rows": _flat("", agg_config)})
    recorded: dict[str, set[str]] = {}
    wanted = set(plan.hashes.values()) | {variant_hash}
    for _, h, attrs in st.stages():
        if h in wanted:
            for pkg, v in attrs.get("versions", {}).items():
                recorded.setdefault(pkg, set()).add(v)
    now = library_versions()
    versions = [{"package": p, "now": v, "recorded": ", ".join(sorted(recorded.get(p, ()))) or "—",
                 "differs": bool(recorded.get(p)) and recorded[p] != {v}} for p, v in now.items()]
    return {"stages": stages, "versions": versions}

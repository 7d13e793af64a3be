"""Figures with matplotlib (Agg backend): the per-image prediction panel and per-class charts.

Layout as anomalib's visualiser: image | ground truth (when known) | heatmap overlay on a fixed
[0, 1] colour scale with a colour bar | predicted mask outline, titled with score and decision.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from skimage.segmentation import mark_boundaries  # noqa: E402

DECISION_COLOURS = {"anomalous": "#c62828", "normal": "#2e7d32", "unknown": "#555555"}
PANEL_SIDE = 2048  # larger images are drawn reduced to at most this many pixels a side (the panel shows ~400)


def display_scale(height: int, width: int) -> int:
    """The whole factor a ``height x width`` image is reduced by for drawing (1 up to ``PANEL_SIDE``).

    Example:
        >>> display_scale(1000, 1500), display_scale(5000, 5000)
        (1, 3)
    """
    return max(1, -(-max(height, width) // PANEL_SIDE))


def _reduced(a: np.ndarray, f: int, how) -> np.ndarray:
    """(H, W[, C]) ``a`` reduced by ``f`` in each spatial axis: blocks of f x f combined by ``how``."""
    from skimage.measure import block_reduce
    return a if f == 1 else block_reduce(a, (f, f) + (1,) * (a.ndim - 2), how)


def prediction_panel(image_hw3: np.ndarray, map_hw: np.ndarray, title: str, decision: str = "unknown",
                     pixel_threshold: float | None = None, gt_mask_hw: np.ndarray | None = None,
                     cmap: str = "jet", alpha: float = 0.5, boxes_xyxy: np.ndarray | None = None) -> bytes:
    """PNG bytes of the panel for one image.

    Args:
        image_hw3: (H, W, 3) uint8 RGB image.
        map_hw: (H, W) anomaly map; drawn on the fixed scale [0, 1] so panels compare.
        title: the figure title (class, score, threshold).
        decision: ``"anomalous"``, ``"normal"`` or ``"unknown"``: the title's colour.
        pixel_threshold: pixels with ``map >= pixel_threshold`` form the predicted mask, outlined
            in red; ``None`` draws no mask and says so.
        gt_mask_hw: (H, W) bool ground truth: when given (all False for a normal image), a
            second panel shows it in green; ``None`` (unlabelled images) leaves the panel out.
        boxes_xyxy: (T, 4) tiles the scores came from, drawn as white frames on the image.
    """
    f = display_scale(*image_hw3.shape[:2])  # maps by their block maximum, so a small defect stays visible
    mask_hw = None if pixel_threshold is None else np.asarray(map_hw) >= pixel_threshold
    covered = None if mask_hw is None else 100 * mask_hw.mean()
    peak = float(np.max(map_hw))
    if f > 1:
        image_hw3 = np.ascontiguousarray(image_hw3[::f, ::f])
        map_hw = _reduced(np.asarray(map_hw, np.float32), f, np.max)[:image_hw3.shape[0], :image_hw3.shape[1]]
        mask_hw = None if mask_hw is None else _reduced(mask_hw, f, np.max)[:image_hw3.shape[0], :image_hw3.shape[1]]
        gt_mask_hw = None if gt_mask_hw is None else _reduced(np.asarray(gt_mask_hw, bool), f, np.max)[
            :image_hw3.shape[0], :image_hw3.shape[1]]
        boxes_xyxy = None if boxes_xyxy is None else np.asarray(boxes_xyxy) / f
    panels = 3 if gt_mask_hw is None else 4
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.3), dpi=100, constrained_layout=True)
    axes[0].imshow(image_hw3)
    axes[0].set_title("image" if boxes_xyxy is None else f"image, {len(boxes_xyxy)} tile(s)")
    for x0, y0, x1, y1 in ([] if boxes_xyxy is None else np.asarray(boxes_xyxy)):
        axes[0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="white",
                                    linewidth=1.2, linestyle="--"))
    if gt_mask_hw is not None:  # ground truth: the mask over a dimmed image, outlined
        gt = np.asarray(gt_mask_hw, bool)
        shown = mark_boundaries((image_hw3 * 0.45).astype(np.uint8), gt.astype(int), color=(0, 1, 0))
        shown[gt] = shown[gt] * 0.3 + np.array([0.0, 0.7, 0.0])
        axes[1].imshow(shown)
        axes[1].set_title("ground truth" + ("" if gt.any() else ": no defect"))
    heat_ax, mask_ax = axes[-2], axes[-1]
    heat_ax.imshow(image_hw3)
    heat = heat_ax.imshow(np.asarray(map_hw, np.float32), cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha)
    fig.colorbar(heat, ax=heat_ax, fraction=0.046, pad=0.02, label="anomaly score")
    heat_ax.set_title(f"heatmap (max {peak:.3g})")
    if mask_hw is None:
        mask_ax.imshow(image_hw3)
        mask_ax.set_title("predicted mask: no pixel threshold")
    else:
        mask_ax.imshow(mark_boundaries(image_hw3, mask_hw.astype(int), color=(1, 0, 0)))
        mask_ax.set_title(f"predicted mask (map >= {pixel_threshold:.3g}, {covered:.1f} %)")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, color=DECISION_COLOURS.get(decision, "black"), fontsize=13, fontweight="bold")
    return _png(fig)


def save_png(data: bytes, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def class_charts(class_name: str, labels: np.ndarray, scores: np.ndarray,
                 pixel_pr: tuple[np.ndarray, np.ndarray] | None, pixel_roc: tuple[np.ndarray, np.ndarray] | None,
                 threshold: float | None = None) -> bytes:
    """One class's charts as PNG bytes: precision-recall (image and pixel level, F1-max point
    marked), ROC (both levels) and the image-score histogram, normal vs anomalous, with the
    decision threshold drawn.

    Args:
        labels, scores: (N,) image labels (0/1) and sample scores.
        pixel_pr: (precision, recall) of the pixel level, or None; pixel_roc: (fpr, tpr) or None.
        threshold: the image threshold to draw on the histogram (e.g. the stored F1-max one).
    """
    from sklearn.metrics import precision_recall_curve, roc_curve
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, np.float64)
    fig, (ax_pr, ax_roc, ax_hist) = plt.subplots(1, 3, figsize=(13, 3.8), dpi=90, constrained_layout=True)
    curves = []
    if labels.any() and not labels.all():
        p, r, _ = precision_recall_curve(labels, scores)
        curves.append(("image", p, r))
        fpr, tpr, _ = roc_curve(labels, scores)
        ax_roc.plot(fpr, tpr, label="image")
    if pixel_pr is not None:
        curves.append(("pixel", *pixel_pr))
    if pixel_roc is not None:
        ax_roc.plot(*pixel_roc, label="pixel")
    for name, p, r in curves:
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p, dtype=np.float64), where=(p + r) > 0)
        k = int(np.argmax(f1))
        line, = ax_pr.plot(r, p, label=f"{name} (F1-max {f1[k]:.3f})")
        ax_pr.plot(r[k], p[k], "o", color=line.get_color(), markersize=7)
    ax_pr.set(xlabel="recall", ylabel="precision", title=f"{class_name}: precision-recall", xlim=(0, 1),
              ylim=(0, 1.02))
    ax_roc.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    bins = np.linspace(scores.min(), scores.max() + 1e-9, 21) if scores.size else 10
    ax_hist.hist([scores[~labels], scores[labels]], bins=bins, label=["normal", "anomalous"],
                 color=[DECISION_COLOURS["normal"], DECISION_COLOURS["anomalous"]], alpha=0.75)
    if threshold is not None and np.isfinite(threshold):
        ax_hist.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax_hist.set(xlabel="image anomaly score", ylabel="images", title="score histogram")
    for ax in (ax_pr, ax_roc, ax_hist):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return _png(fig)


def variant_small_multiples(variants: list[dict], params: list[str], metrics: list[str]) -> bytes:
    """PNG bytes: the mean metrics of a variant grid, one panel per (metric, parameter).

    In each panel every variant is a dot at its value of the parameter (spread sideways so ties
    show), and the black line joins the mean over the variants sharing a value: the marginal
    effect of that parameter with the others swept.

    Args:
        variants: one dict per variant holding a value for each of ``params`` and ``metrics``
            (metrics in [0, 1]; NaN ones are left out).
        params: the parameters that vary (columns); metrics: the metric names (rows).
    """
    fig, axes = plt.subplots(len(metrics), len(params), figsize=(2.7 * len(params) + 0.8, 2.2 * len(metrics) + 0.5),
                             dpi=90, squeeze=False, constrained_layout=True)
    for j, param in enumerate(params):
        values = sorted({str(v[param]) for v in variants})
        where = np.array([values.index(str(v[param])) for v in variants], dtype=np.float64)
        spread = np.zeros_like(where)
        for k in range(len(values)):  # deterministic sideways spread within each value
            idx = np.flatnonzero(where == k)
            spread[idx] = np.linspace(-0.15, 0.15, idx.size) if idx.size > 1 else 0.0
        for i, metric in enumerate(metrics):
            ax, ys = axes[i][j], 100 * np.array([v[metric] for v in variants], dtype=np.float64)
            ax.scatter(where + spread, ys, s=12, alpha=0.55, color="#1565c0")
            means = [np.nanmean(ys[where == k]) if np.isfinite(ys[where == k]).any() else np.nan
                     for k in range(len(values))]
            ax.plot(range(len(values)), means, "-o", color="black", markersize=4, linewidth=1.5)
            ax.set_xticks(range(len(values)), values, fontsize=8)
            ax.set_xlim(-0.5, len(values) - 0.5)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"mean {metric} (%)", fontsize=9)
            if i == 0:
                ax.set_title(param, fontsize=10)
    return _png(fig)

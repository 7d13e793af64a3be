"""Figures with matplotlib (Agg backend): the per-image prediction panel.

Layout as anomalib's visualiser: image | heatmap overlay on a fixed [0, 1] colour scale with a
colour bar | predicted mask outline (and ground truth when known), titled with score and decision.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import mark_boundaries  # noqa: E402

DECISION_COLOURS = {"anomalous": "#c62828", "normal": "#2e7d32", "unknown": "#555555"}


def prediction_panel(image_hw3: np.ndarray, map_hw: np.ndarray, title: str, decision: str = "unknown",
                     pixel_threshold: float | None = None, gt_mask_hw: np.ndarray | None = None,
                     cmap: str = "jet", alpha: float = 0.5) -> bytes:
    """PNG bytes of the panel for one image.

    Args:
        image_hw3: (H, W, 3) uint8 RGB image.
        map_hw: (H, W) anomaly map; drawn on the fixed scale [0, 1] so panels compare.
        title: the figure title (class, score, threshold).
        decision: ``"anomalous"``, ``"normal"`` or ``"unknown"``: the title's colour.
        pixel_threshold: pixels with ``map >= pixel_threshold`` form the predicted mask, outlined
            in red; ``None`` draws no mask and says so.
        gt_mask_hw: (H, W) bool ground truth, outlined in green in the first panel when given.
    """
    has_gt = gt_mask_hw is not None and np.asarray(gt_mask_hw).any()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3), dpi=100, constrained_layout=True)
    first = mark_boundaries(image_hw3, np.asarray(gt_mask_hw, int), color=(0, 1, 0)) if has_gt else image_hw3
    axes[0].imshow(first)
    axes[0].set_title("image" + (" (ground truth in green)" if has_gt else ""))
    axes[1].imshow(image_hw3)
    heat = axes[1].imshow(np.asarray(map_hw, np.float32), cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha)
    fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.02, label="anomaly score")
    axes[1].set_title(f"heatmap (max {float(np.max(map_hw)):.3g})")
    if pixel_threshold is None:
        axes[2].imshow(image_hw3)
        axes[2].set_title("predicted mask: no pixel threshold")
    else:
        mask = np.asarray(map_hw) >= pixel_threshold
        axes[2].imshow(mark_boundaries(image_hw3, mask.astype(int), color=(1, 0, 0)))
        axes[2].set_title(f"predicted mask (map >= {pixel_threshold:.3g}, {100 * mask.mean():.1f} %)")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, color=DECISION_COLOURS.get(decision, "black"), fontsize=13, fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def save_png(data: bytes, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path

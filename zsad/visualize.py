"""Heatmap overlays and panels as uint8 RGB arrays (no plotting library needed)."""

from __future__ import annotations

import numpy as np

# A perceptual "inferno"-like ramp: black -> purple -> orange -> yellow.
_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


def colormap(values_hw: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Map values to (H, W, 3) uint8 colours; values are clipped to [vmin, vmax]."""
    t = np.clip((np.asarray(values_hw, np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    pos = t * (len(_STOPS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_STOPS) - 2)
    frac = (pos - lo)[..., None]
    return np.rint(_STOPS[lo] * (1 - frac) + _STOPS[lo + 1] * frac).astype(np.uint8)


def overlay(image_hw3: np.ndarray, map_hw: np.ndarray, alpha: float = 0.55, vmax: float | None = None) -> np.ndarray:
    """Image blended with the coloured map (scaled to its max unless ``vmax`` is given)."""
    vmax = float(map_hw.max()) if vmax is None else vmax
    heat = colormap(map_hw, 0.0, vmax if vmax > 0 else 1.0).astype(np.float64)
    return np.rint(image_hw3 * (1 - alpha) + heat * alpha).astype(np.uint8)


def outline(image_hw3: np.ndarray, mask_hw: np.ndarray, colour=(0, 255, 0)) -> np.ndarray:
    """Image with the boundary of ``mask_hw`` drawn in ``colour``."""
    m = np.asarray(mask_hw, bool)
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    out = image_hw3.copy()
    out[edge] = colour
    return out


def draw_boxes(image_hw3: np.ndarray, boxes_xyxy: np.ndarray, colour=(0, 200, 255)) -> np.ndarray:
    out = image_hw3.copy()
    h, w = out.shape[:2]
    for x0, y0, x1, y1 in np.asarray(boxes_xyxy).tolist():
        x1, y1 = min(x1, w) - 1, min(y1, h) - 1
        out[y0, x0:x1 + 1] = out[y1, x0:x1 + 1] = colour
        out[y0:y1 + 1, x0] = out[y0:y1 + 1, x1] = colour
    return out


def panel(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Side-by-side panel of same-height (H, W, 3) images."""
    h = images[0].shape[0]
    parts = []
    for img in images:
        if img.shape[0] != h:
            raise ValueError(f"panel images must share a height, got {[i.shape for i in images]}")
        parts += [img, np.full((h, gap, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)

"""Tiny SVG charts (line plots, histograms) for self-contained HTML reports."""

from __future__ import annotations

from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _frame(w: int, h: int, title: str, xlabel: str, ylabel: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'class="chart"><rect x="40" y="20" width="{w - 60}" height="{h - 60}" fill="#fafafa" stroke="#999"/>'
            f'<text x="{w / 2}" y="14" text-anchor="middle" font-size="12">{escape(title)}</text>'
            f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>'
            f'<text x="12" y="{h / 2}" font-size="11" transform="rotate(-90 12 {h / 2})" text-anchor="middle">'
            f'{escape(ylabel)}</text><text x="36" y="{h - 38}" font-size="9" text-anchor="end">0</text>'
            f'<text x="36" y="26" font-size="9" text-anchor="end">1</text>{body}</svg>')


def line_chart(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str, ylabel: str,
               w: int = 320, h: int = 240) -> str:
    """Lines of (x, y) in [0, 1]^2, one per named series, with a legend."""
    pw, ph = w - 60, h - 60
    body = []
    for i, (name, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, float), np.asarray(y, float)
        if x.size > 400:  # thin long curves, keep ends
            idx = np.unique(np.r_[np.linspace(0, x.size - 1, 400).astype(int), x.size - 1])
            x, y = x[idx], y[idx]
        pts = " ".join(f"{40 + xi * pw:.1f},{20 + (1 - yi) * ph:.1f}" for xi, yi in zip(x, y))
        colour = PALETTE[i % len(PALETTE)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        body.append(f'<text x="{w - 25}" y="{34 + 12 * i}" font-size="10" text-anchor="end" fill="{colour}">'
                    f'{escape(name)}</text>')
    return _frame(w, h, title, xlabel, ylabel, "".join(body))


def histogram(groups: dict[str, np.ndarray], title: str, bins: int = 20, w: int = 320, h: int = 240) -> str:
    """Overlaid normalised histograms over the values' own range (its ends are labelled)."""
    pw, ph = w - 60, h - 60
    values = np.concatenate([np.asarray(v, float) for v in groups.values()] + [np.zeros(0)])
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = max(hi - lo, 1e-6) * 0.05
    lo, hi = lo - pad, hi + pad
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(v, edges)[0] / max(len(v), 1) for k, v in groups.items()}
    top = max([c.max() for c in counts.values() if c.size] + [1e-9])
    body = []
    for i, (name, c) in enumerate(counts.items()):
        colour = PALETTE[i % len(PALETTE)]
        for j, v in enumerate(c):
            bh = v / top * ph
            body.append(f'<rect x="{40 + (edges[j] - lo) / (hi - lo) * pw:.1f}" y="{20 + ph - bh:.1f}" width="{pw / bins:.1f}" '
                        f'height="{bh:.1f}" fill="{colour}" fill-opacity="0.45"/>')
        body.append(f'<text x="{w - 25}" y="{34 + 12 * i}" font-size="10" text-anchor="end" fill="{colour}">'
                    f'{escape(name)} (n={len(groups[name])})</text>')
    body.append(f'<text x="40" y="{h - 28}" font-size="9">{lo:.3g}</text>'
                f'<text x="{w - 20}" y="{h - 28}" font-size="9" text-anchor="end">{hi:.3g}</text>')
    return _frame(w, h, title, "score", "fraction of images (tallest bar = 1)", "".join(body))

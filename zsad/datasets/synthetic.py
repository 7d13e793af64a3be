"""Synthetic inspection images with known defects, written in the MVTec AD layout.

Two classes: ``pill`` (1-4 capsule-shaped objects, a multi-instance class like VisA's
capsules) and ``washer`` (one ring). Defects: ``scratch`` (thin dark line), ``dent`` (shaded
blob), ``missing`` (a chunk of the object replaced by background), ``stain`` (coloured blob).
Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFECTS = ("scratch", "dent", "missing", "stain")
CLASSES = ("pill", "washer")


@dataclass(frozen=True)
class SyntheticSpec:
    """Size of a synthetic data set: per class, ``n_good`` normal and ``n_per_defect`` of each defect."""

    image_size: int = 256
    n_good: int = 4
    n_per_defect: int = 1
    n_train: int = 2
    classes: tuple[str, ...] = CLASSES
    defects: tuple[str, ...] = DEFECTS
    seed: int = 0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array([70, 90, 75]) + rng.integers(-10, 10, 3)
    noise = rng.normal(0, 6, (size, size, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _object_mask(cls: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) bool union of the class's objects."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if cls == "washer":
        r = size * rng.uniform(0.28, 0.34)
        c = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
        draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
        draw.ellipse([c[0] - r * 0.4, c[1] - r * 0.4, c[0] + r * 0.4, c[1] + r * 0.4], fill=0)
    elif cls == "pill":
        n = int(rng.integers(1, 5))
        slots = rng.permutation(4)[:n]
        for s in slots:
            cx, cy = (s % 2 + 0.5) * size / 2, (s // 2 + 0.5) * size / 2
            w, h = size * 0.36, size * 0.16
            if rng.random() < 0.5:
                w, h = h, w
            draw.rounded_rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], radius=min(w, h) / 2, fill=255)
    else:
        raise ValueError(f"unknown synthetic class {cls!r}; known: {CLASSES}")
    return np.asarray(canvas) > 0


def _blob(rng: np.random.Generator, size: int, inside: np.ndarray, radius: float) -> np.ndarray:
    ys, xs = np.nonzero(inside)
    k = int(rng.integers(len(ys)))
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-(((yy - ys[k]) ** 2 + (xx - xs[k]) ** 2) / (2 * radius**2)))


def _defect(kind: str, rng: np.random.Generator, img: np.ndarray, obj: np.ndarray, bg: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    out = img.astype(np.float32)
    if kind == "scratch":
        ys, xs = np.nonzero(obj)
        k = int(rng.integers(len(ys)))
        angle, length = rng.uniform(0, np.pi), size * rng.uniform(0.08, 0.16)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        line = Image.new("L", (size, size), 0)
        ImageDraw.Draw(line).line([xs[k] - dx, ys[k] - dy, xs[k] + dx, ys[k] + dy], fill=255,
                                  width=max(2, size // 100))
        mask = (np.asarray(line) > 0) & obj
        out[mask] *= 0.35
    elif kind == "dent":
        g = _blob(rng, size, obj, size * 0.03)
        mask = (g > 0.3) & obj
        out -= (70 * g * obj)[..., None]
    elif kind == "missing":
        g = _blob(rng, size, obj, size * 0.045)
        mask = (g > 0.35) & obj
        out[mask] = bg[mask]
    elif kind == "stain":
        g = _blob(rng, size, obj, size * 0.03)
        mask = (g > 0.35) & obj
        colour = np.array([150, 60, 20], np.float32)
        alpha = (0.8 * np.clip(g * 1.5, 0, 1) * mask)[..., None]
        out = out * (1 - alpha) + colour * alpha
    else:
        raise ValueError(f"unknown defect {kind!r}; known: {DEFECTS}")
    if not mask.any():  # degenerate draw: make sure the label is honest
        raise RuntimeError("synthetic defect left no pixels; try another seed")
    return np.clip(out, 0, 255).astype(np.uint8), mask


def make_image(cls: str, defect: str | None, seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 image and its (H, W) bool defect mask (all False for normal)."""
    rng = np.random.default_rng(seed)
    bg = _background(rng, size)
    obj = _object_mask(cls, rng, size)
    colour = np.array([225, 215, 190] if cls == "pill" else [170, 175, 185]) + rng.integers(-8, 8, 3)
    shade = rng.normal(0, 3, (size, size, 1))
    img = np.where(obj[..., None], np.clip(colour + shade, 0, 255), bg).astype(np.uint8)
    shadow = np.asarray(Image.fromarray((obj * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))) / 255.0
    img = np.where(obj[..., None], img, (img * (1 - 0.3 * shadow[..., None])).astype(np.uint8))
    if defect is None:
        return img, np.zeros((size, size), bool)
    return _defect(defect, rng, img, obj, bg)


def write_synthetic(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write the data set under ``root`` in the MVTec AD layout; returns ``root``."""
    root = Path(root)
    for ci, cls in enumerate(spec.classes):
        jobs = [("train", "good", None, i) for i in range(spec.n_train)]
        jobs += [("test", "good", None, i) for i in range(spec.n_good)]
        jobs += [("test", d, d, i) for d in spec.defects for i in range(spec.n_per_defect)]
        for n, (split, folder, defect, i) in enumerate(jobs):
            seed = spec.seed * 1_000_003 + ci * 10_007 + n
            img, mask = make_image(cls, defect, seed, spec.image_size)
            out = root / cls / split / folder
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out / f"{i:03d}.png")
            if defect is not None:
                gt = root / cls / "ground_truth" / folder
                gt.mkdir(parents=True, exist_ok=True)
                Image.fromarray((mask * 255).astype(np.uint8)).save(gt / f"{i:03d}_mask.png")
    return root

"""Per-class evaluation and the seed's table layout (Tables 1 and 2: F1-max per VisA class)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .bins import BIN_VALUES, FLOAT16_BINS, CellTruth, float16_bins
from .datasets.mvtec import MVTEC_CLASSES
from .metrics import PixelAccumulator, sample_metrics
from .pixelmaps import PastedMap, resize_map
from .thresholds import Threshold, f1_threshold, fpr_threshold, histogram_fpr_threshold

VISA_ORDER = ("pcb1", "pcb2", "pcb3", "pcb4", "capsules", "candle", "macaroni1", "macaroni2", "cashew",
              "chewinggum", "fryum", "pipe_fryum")
# The seed's published rows (F1-max, %), VisA, in VISA_ORDER then the mean.
PUBLISHED = {
    "sample": {
        "WinCLIP": (71.0, 67.1, 71.0, 74.9, 83.9, 89.4, 74.2, 69.8, 88.4, 94.8, 82.7, 80.7, 79.0),
        "APRIL-GAN": (66.9, 70.1, 66.7, 87.3, 77.6, 77.8, 71.1, 69.1, 84.8, 93.7, 91.7, 87.7, 78.7),
        "VVV (seed)": (74.3, 67.1, 70.2, 87.3, 84.9, 82.1, 83.3, 76.9, 82.3, 94.4, 84.8, 90.0, 81.5),
    },
    "pixel": {
        "WinCLIP": (2.4, 4.7, 10.3, 32.0, 9.2, 22.5, 7.0, 1.0, 13.2, 41.1, 22.1, 12.3, 14.8),
        "APRIL-GAN": (12.5, 23.4, 21.7, 31.3, 48.5, 39.4, 35.5, 13.7, 22.9, 78.5, 29.7, 30.4, 32.3),
        "VVV (seed)": (29.5, 11.0, 4.7, 21.7, 31.9, 20.2, 24.6, 7.2, 24.5, 63.4, 31.3, 19.6, 24.2),
    },
}
# MuSc's published rows (F1-max, %; github.com/xrli-U/MuSc README, ViT-L-14-336 at 518 px), VisA in VISA_ORDER
PUBLISHED["sample"]["MuSc (ViT-L-14-336, 518)"] = (84.36, 88.66, 86.92, 92.89, 86.43, 91.26, 82.76, 69.96, 95.57,
                                                   96.45, 97.44, 96.04, 89.06)
PUBLISHED["pixel"]["MuSc (ViT-L-14-336, 518)"] = (80.49, 34.38, 40.23, 46.38, 50.85, 39.56, 21.90, 11.06, 74.88,
                                                  61.33, 58.13, 67.56, 48.90)
MVTEC_ORDER = MVTEC_CLASSES  # MuSc's MVTec AD table lists the classes in the data set's order
PUBLISHED_MVTEC = {  # MuSc's MVTec AD rows (F1-max, %), in MVTEC_ORDER then the mean
    "sample": {"MuSc (ViT-L-14-336, 518)": (99.21, 97.30, 94.88, 99.44, 96.49, 98.55, 100.0, 97.38, 95.89, 88.89,
                                            100.0, 100.0, 95.00, 98.33, 99.17, 97.37)},
    "pixel": {"MuSc (ViT-L-14-336, 518)": (79.17, 60.97, 49.80, 73.33, 43.94, 73.41, 62.84, 46.22, 65.54, 41.87,
                                           74.71, 70.19, 59.24, 68.64, 62.48, 62.16)},
}

@dataclass
class ClassEvaluator:
    """Accumulates one class's images; pixel metrics are streamed (bounded memory).

    ``pixel_size``: if set, map (bilinear) and mask (nearest) are resized to
    ``pixel_size`` x ``pixel_size`` before the pixel metrics; default: the map's own resolution,
    which for zsad is the image's, so masks are used as they are.
    """

    pixel_size: int | None = None
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    pixels: PixelAccumulator | None = None
    normal_pixels: np.ndarray | None = None  # (FLOAT16_BINS,) counts of the pixels of normal images

    def update(self, label: int, score: float, mask_hw: np.ndarray | None, map_hw: np.ndarray | None) -> None:
        """One image: its label and sample score, and (when given) its full-size map."""
        self.add_sample(label, score)
        if map_hw is not None:
            self.add_map(label, mask_hw, map_hw)

    def add_sample(self, label: int, score: float) -> None:
        """One image's label and sample score (no map)."""
        self.labels.append(int(label))
        self.scores.append(float(score))

    def add_pixels(self, label: int, truth: CellTruth, window: PastedMap) -> None:
        """One image's map (its covered cells) against its ground truth laid out along the same
        cells (``CellTruth``, built once per image: a sweep's maps share it): the same counts as
        ``update`` with the full map, binning only the covered pixels. With ``pixel_size`` the
        full map is resized as in ``update``."""
        if self.pixel_size:
            self.add_map(label, truth.gt.mask_hw, window.full())
            return
        if self.pixels is None:
            self.pixels = PixelAccumulator()
        counts = self.pixels.update_cells(truth, window.cells)
        if label == 0:
            self._add_normal(counts)

    def add_map(self, label: int, mask_hw: np.ndarray | None, map_hw: np.ndarray) -> None:
        """One image's full map against its mask (None: all normal), resized with ``pixel_size``."""
        if mask_hw is None:
            mask_hw = np.zeros(map_hw.shape, bool)
        if self.pixel_size:
            size = (self.pixel_size, self.pixel_size)
            map_hw = resize_map(map_hw, size)
            mask_hw = resize_map(mask_hw.astype(np.float32), size) >= 0.5  # nearest-like for binary
        if self.pixels is None:
            self.pixels = PixelAccumulator()
        self.pixels.update(mask_hw, map_hw)
        if label == 0:
            self._add_normal(np.bincount(float16_bins(map_hw).ravel(), minlength=FLOAT16_BINS))

    def _add_normal(self, counts: np.ndarray) -> None:
        self.normal_pixels = counts if self.normal_pixels is None else self.normal_pixels + counts

    def merge(self, other: "ClassEvaluator") -> "ClassEvaluator":
        """Add another evaluator's images (from another worker) to this one."""
        self.labels += other.labels
        self.scores += other.scores
        if other.pixels is not None:
            self.pixels = other.pixels if self.pixels is None else self.pixels.merge(other.pixels)
        if other.normal_pixels is not None:
            self.normal_pixels = other.normal_pixels if self.normal_pixels is None else \
                self.normal_pixels + other.normal_pixels
        return self

    def result(self) -> dict[str, float]:
        out = {f"sample_{k}": v for k, v in sample_metrics(np.array(self.labels), np.array(self.scores)).items()}
        if self.pixels is not None:
            out.update({f"pixel_{k}": v for k, v in self.pixels.result().items()})
        out["n_images"] = len(self.labels)
        out["n_anomalous"] = int(sum(self.labels))
        return out


    def thresholds(self, dataset: str, fpr: float | None = 0.01) -> dict[str, dict[str, Threshold]]:
        """Decision thresholds from this class's images: F1-max (image and pixel, needs both
        labels) and, with ``fpr``, the false-alarm-rate ones from its normal images only."""
        labels, scores = np.array(self.labels), np.array(self.scores)
        n, n_normal = len(labels), int((labels == 0).sum())
        out: dict[str, dict[str, Threshold]] = {"image": {}, "pixel": {}}
        if labels.any() and not labels.all():
            out["image"]["f1"] = Threshold(f1_threshold(labels, scores), "f1", dataset, n)
        if self.pixels is not None and self.pixels.pos.any():
            out["pixel"]["f1"] = Threshold(self.pixels.f1_threshold(), "f1", dataset, n)
        if fpr is not None and n_normal:
            out["image"]["fpr"] = Threshold(fpr_threshold(scores[labels == 0], fpr), "fpr", dataset, n_normal, fpr)
            if self.normal_pixels is not None:
                value = histogram_fpr_threshold(self.normal_pixels, BIN_VALUES, fpr)
                out["pixel"]["fpr"] = Threshold(value, "fpr", dataset, n_normal, fpr)
        return out


def with_mean(per_class: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Add a ``mean`` row: the mean over classes of each metric, ignoring NaN."""
    keys = sorted({k for row in per_class.values() for k in row})
    mean = {}
    for k in keys:
        vals = [row[k] for row in per_class.values() if k in row and not math.isnan(row[k])]
        mean[k] = float(np.mean(vals)) if vals else math.nan
    return {**per_class, "mean": mean}


def evaluate_classes(evaluators: dict[str, "ClassEvaluator"]) -> dict[str, dict[str, float]]:
    """Each class's metrics (``ClassEvaluator.result``) and their ``mean`` row."""
    return with_mean({c: e.result() for c, e in sorted(evaluators.items())})


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def seed_rows(results: dict[str, dict[str, float]], level: str = "sample", metric: str = "f1_max",
              ours: str = "zsad", published: bool = True) -> tuple[list[str], list[list[str]]]:
    """The seed's layout as (header, rows of cells): classes as columns, methods as rows, in %.

    The published rows are shown when the classes are VisA's (the seed's, WinCLIP's,
    APRIL-GAN's and MuSc's) or MVTec AD's (MuSc's).
    """
    classes = [c for c in results if c != "mean"]
    table = None
    for order, rows_by_level in ((VISA_ORDER, PUBLISHED), (MVTEC_ORDER, PUBLISHED_MVTEC)):
        if set(classes) == set(order):
            classes, table = list(order), rows_by_level
    header = ["method", *classes, "Mean"]
    rows = []
    key = f"{level}_{metric}"
    if published and metric == "f1_max" and table is not None:
        rows += [[name, *(f"{v:.1f}" for v in values)] for name, values in table[level].items()]
    rows.append([ours, *(_fmt(results[c].get(key, math.nan)) for c in classes),
                 _fmt(results["mean"].get(key, math.nan))])
    return header, rows


def seed_table(results: dict[str, dict[str, float]], level: str = "sample", metric: str = "f1_max",
               ours: str = "zsad", published: bool = True) -> str:
    """``seed_rows`` as a Markdown table."""
    header, rows = seed_rows(results, level, metric, ours, published)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

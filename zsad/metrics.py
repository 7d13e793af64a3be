"""F1-max, AUROC, AP and AUPRO, exact (scikit-learn curves) and binned (bounded memory).

Conventions (as WinCLIP / the VAND evaluation scripts): F1-max is the best F1 over the
precision-recall curve; AUPRO integrates the per-region overlap over FPR in [0, 0.3] and
divides by 0.3; regions are 8-connected components of each ground-truth mask. A metric whose
labels hold a single class is undefined and returned as NaN.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .bins import BIN_VALUES, EIGHT, FLOAT16_BINS, CellTruth, float16_bins  # noqa: F401 (BIN_VALUES re-exported)


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return labels.astype(bool), scores


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def f1_from_pr(precision: np.ndarray, recall: np.ndarray) -> float:
    """Largest ``2PR / (P + R)`` over curve points (0 where P + R = 0)."""
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)
    return float(f1.max())


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 over all thresholds (NaN without any positive).

    Example:
        >>> f1_max(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))  # t=0.4: P=2/3, R=1
        0.8
    """
    labels, scores = _check(labels, scores)
    if not labels.any():
        return math.nan
    from sklearn.metrics import precision_recall_curve  # here: aggregation workers need no scikit-learn
    precision, recall, _ = precision_recall_curve(labels, scores)
    return f1_from_pr(precision, recall)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    labels, scores = _check(labels, scores)
    return float(roc_auc_score(labels, scores)) if _both_classes(labels) else math.nan


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score
    labels, scores = _check(labels, scores)
    return float(average_precision_score(labels, scores)) if labels.any() else math.nan


def _pro_area(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """Area under PRO(FPR) for FPR in [0, limit], divided by ``limit``; curve sorted by FPR."""
    order = np.lexsort((pro, fpr))
    fpr, pro = fpr[order], pro[order]
    cut = np.searchsorted(fpr, limit, side="right")
    x, y = fpr[:cut], pro[:cut]
    if cut < fpr.size and (x.size == 0 or x[-1] < limit):
        y_lim = np.interp(limit, fpr[cut - 1: cut + 1], pro[cut - 1: cut + 1]) if cut > 0 else pro[0]
        x, y = np.append(x, limit), np.append(y, y_lim)
    return float(np.trapezoid(y, x) / limit)


def regions(masks_nhw: np.ndarray) -> list[np.ndarray]:
    """Flat pixel indices (into ``masks_nhw.ravel()``) of every 8-connected ground-truth region."""
    out, offset = [], 0
    for m in np.asarray(masks_nhw, bool):
        lab, n = ndimage.label(m, structure=EIGHT)
        flat = lab.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(1, n + 2))
        out += [order[bounds[i]: bounds[i + 1]] + offset for i in range(n)]
        offset += m.size
    return out


def aupro(masks_nhw: np.ndarray, maps_nhw: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Exact normalised area under the per-region-overlap curve up to ``fpr_limit``.

    Thresholds are every distinct score (scikit-learn's ROC thresholds on all pixels); at each,
    PRO is the mean over regions of the fraction of the region's pixels scoring >= threshold.
    """
    labels, scores = _check(np.asarray(masks_nhw), np.asarray(maps_nhw))
    if not _both_classes(labels):
        return math.nan
    from sklearn.metrics import roc_curve
    fpr, _, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    thresholds = np.minimum(thresholds, np.finfo(np.float64).max)
    pro = np.zeros_like(fpr)
    regs = regions(np.asarray(masks_nhw))
    for idx in regs:
        region = np.sort(scores[idx])
        pro += (region.size - np.searchsorted(region, thresholds, side="left")) / region.size
    return _pro_area(fpr, pro / len(regs), fpr_limit)


class PixelAccumulator:
    """Streams (mask, map) pairs into float16-exact histograms: memory O(bins), not O(pixels).

    Every map value is rounded to float16 and counted in its own bin (``float16_bins``), so
    F1-max, AUROC, AP and AUPRO equal the exact ones (scikit-learn, ``aupro``) on the
    float16-rounded maps, at every threshold. For AUPRO each ground-truth region (8-connected)
    adds its pixels with weight ``1 / region size`` to one histogram: the mean overlap at a
    threshold is that histogram's tail sum over the number of regions.
    ``tests/test_metrics.py`` checks the equality.
    """

    def __init__(self, fpr_limit: float = 0.3):
        self.fpr_limit = fpr_limit
        self.pos = np.zeros(FLOAT16_BINS, np.int64)
        self.neg = np.zeros(FLOAT16_BINS, np.int64)
        self.region_weight = np.zeros(FLOAT16_BINS, np.float64)
        self.n_regions = 0

    def update(self, mask_hw: np.ndarray, map_hw: np.ndarray) -> None:
        mask_hw = np.asarray(mask_hw, bool)
        if mask_hw.shape != np.shape(map_hw):
            raise ValueError(f"mask {mask_hw.shape} and map {np.shape(map_hw)} differ in shape")
        b = float16_bins(map_hw)
        self.pos += np.bincount(b[mask_hw], minlength=FLOAT16_BINS)
        self.neg += np.bincount(b[~mask_hw], minlength=FLOAT16_BINS)
        labels, n = ndimage.label(mask_hw, structure=EIGHT)
        if n:
            size = np.bincount(labels.ravel())
            self.region_weight += np.bincount(b[mask_hw], weights=1.0 / size[labels[mask_hw]], minlength=FLOAT16_BINS)
            self.n_regions += n

    def update_cells(self, truth: CellTruth, cells) -> np.ndarray:
        """``update`` for a map given as covered cells (``zsad.pixelmaps.PastedMap.cells``, laid
        out as ``truth``), 0 elsewhere: only covered pixels are binned; the others are counted in
        bin 0 by the mask. Equal to ``update(mask, full map)``: counts exactly, the region weights
        up to float64 summation order (~1e-16 relative). Returns this image's (FLOAT16_BINS,)
        histogram of all its pixels (for the normal-pixel threshold)."""
        bits = truth.bins(cells)
        if truth.mask_codes is None:
            counts = np.bincount(bits, minlength=FLOAT16_BINS)
            counts[0] += truth.neg_out
            neg, pos = counts, None
        else:
            both = np.bincount(bits + truth.mask_codes, minlength=2 * FLOAT16_BINS)
            neg, pos = both[:FLOAT16_BINS], both[FLOAT16_BINS:]
            neg[0] += truth.neg_out
        self.neg += neg
        if pos is None and not truth.pos_out:
            return neg
        pos = np.zeros(FLOAT16_BINS, np.int64) if pos is None else pos
        pos[0] += truth.pos_out
        self.pos += pos
        region = np.bincount(bits[truth.defect_idx], weights=truth.defect_weight, minlength=FLOAT16_BINS)
        region[0] += truth.weight_out
        self.region_weight += region
        self.n_regions += truth.n_regions
        return neg + pos

    def merge(self, other: "PixelAccumulator") -> "PixelAccumulator":
        """Add another accumulator's pixels (e.g. from another worker)."""
        self.pos += other.pos
        self.neg += other.neg
        self.region_weight += other.region_weight
        self.n_regions += other.n_regions
        return self

    def _curves(self) -> tuple[np.ndarray, np.ndarray]:
        """Counts scoring >= each bin's value, highest threshold first (plus the empty one)."""
        tp = np.concatenate([[0], np.cumsum(self.pos[::-1])])
        fp = np.concatenate([[0], np.cumsum(self.neg[::-1])])
        return tp, fp

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) at every bin, highest threshold first."""
        tp, fp = self._curves()
        recall = tp / max(tp[-1], 1)
        return np.divide(tp, tp + fp, out=np.ones_like(recall), where=(tp + fp) > 0), recall

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(false positive rate, true positive rate) at every bin, highest threshold first."""
        tp, fp = self._curves()
        return fp / max(fp[-1], 1), tp / max(tp[-1], 1)

    def f1_threshold(self) -> float:
        """The map value at the F1-max point (NaN without positive pixels); ties go to the highest
        threshold. A pixel is anomalous when its value is >= this one."""
        if not self.pos.any():
            return math.nan
        precision, recall = self.pr_curve()
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        k = int(np.flatnonzero(f1 == f1.max())[0])  # the top k bins are flagged
        return float(BIN_VALUES[FLOAT16_BINS - k]) if k else math.inf

    def result(self) -> dict[str, float]:
        tp, fp = self._curves()
        p, n = tp[-1], fp[-1]
        if p == 0:
            return {"f1_max": math.nan, "auroc": math.nan, "ap": math.nan, "aupro": math.nan}
        recall = tp / p
        precision = np.divide(tp, tp + fp, out=np.ones_like(recall), where=(tp + fp) > 0)
        keep = np.concatenate([[True], np.diff(tp + fp) > 0])  # drop empty bins (repeated points)
        ap = float(np.sum(np.diff(recall[keep]) * precision[keep][1:]))
        if n == 0:
            return {"f1_max": f1_from_pr(precision, recall), "auroc": math.nan, "ap": ap, "aupro": math.nan}
        fpr = fp / n
        pro = np.concatenate([[0.0], np.cumsum(self.region_weight[::-1])]) / self.n_regions
        return {"f1_max": f1_from_pr(precision, recall), "auroc": float(np.trapezoid(recall, fpr)), "ap": ap,
                "aupro": _pro_area(fpr[keep], pro[keep], self.fpr_limit)}


def sample_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Image-level F1-max, AUROC and AP."""
    return {"f1_max": f1_max(labels, scores), "auroc": auroc(labels, scores), "ap": average_precision(labels, scores)}


def pixel_metrics_exact(masks_nhw: np.ndarray, maps_nhw: np.ndarray) -> dict[str, float]:
    """Pixel-level F1-max, AUROC, AP, AUPRO on all pixels at once (small data only)."""
    return {"f1_max": f1_max(masks_nhw, maps_nhw), "auroc": auroc(masks_nhw, maps_nhw),
            "ap": average_precision(masks_nhw, maps_nhw), "aupro": aupro(masks_nhw, maps_nhw)}

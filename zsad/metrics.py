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
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

EIGHT = np.ones((3, 3), bool)


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
    precision, recall, _ = precision_recall_curve(labels, scores)
    return f1_from_pr(precision, recall)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels, scores = _check(labels, scores)
    return float(roc_auc_score(labels, scores)) if _both_classes(labels) else math.nan


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
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
    fpr, _, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    thresholds = np.minimum(thresholds, np.finfo(np.float64).max)
    pro = np.zeros_like(fpr)
    regs = regions(np.asarray(masks_nhw))
    for idx in regs:
        region = np.sort(scores[idx])
        pro += (region.size - np.searchsorted(region, thresholds, side="left")) / region.size
    return _pro_area(fpr, pro / len(regs), fpr_limit)


class PixelAccumulator:
    """Streams (mask, map) pairs into score histograms: memory O(bins x regions), not O(pixels).

    Scores are clipped to ``[lo, hi]`` and binned into ``bins`` equal bins; thresholds are the
    bin edges, so every metric is the exact one for scores rounded down to their bin's edge.
    ``tests/test_metrics.py`` checks the result against the exact functions.
    """

    def __init__(self, bins: int = 4096, lo: float = 0.0, hi: float = 1.0, fpr_limit: float = 0.3):
        if bins < 2 or not hi > lo:
            raise ValueError(f"need bins >= 2 and hi > lo, got bins={bins}, lo={lo}, hi={hi}")
        self.bins, self.lo, self.hi, self.fpr_limit = bins, lo, hi, fpr_limit
        self.pos = np.zeros(bins, np.int64)
        self.neg = np.zeros(bins, np.int64)
        self.region_hists: list[np.ndarray] = []

    def _bin(self, values: np.ndarray) -> np.ndarray:
        idx = np.floor((np.asarray(values, np.float64) - self.lo) / (self.hi - self.lo) * self.bins)
        return np.clip(idx, 0, self.bins - 1).astype(np.int64)

    def update(self, mask_hw: np.ndarray, map_hw: np.ndarray) -> None:
        mask_hw = np.asarray(mask_hw, bool)
        if mask_hw.shape != np.shape(map_hw):
            raise ValueError(f"mask {mask_hw.shape} and map {np.shape(map_hw)} differ in shape")
        b = self._bin(map_hw)
        self.pos += np.bincount(b[mask_hw], minlength=self.bins)
        self.neg += np.bincount(b[~mask_hw], minlength=self.bins)
        for idx in regions(mask_hw[None]):
            self.region_hists.append(np.bincount(b.ravel()[idx], minlength=self.bins).astype(np.int32))

    def _curves(self) -> tuple[np.ndarray, np.ndarray]:
        """Counts scoring >= each bin's lower edge, highest threshold first (plus the empty one)."""
        tp = np.concatenate([[0], np.cumsum(self.pos[::-1])])
        fp = np.concatenate([[0], np.cumsum(self.neg[::-1])])
        return tp, fp

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) at every bin edge, highest threshold first."""
        tp, fp = self._curves()
        recall = tp / max(tp[-1], 1)
        return np.divide(tp, tp + fp, out=np.ones_like(recall), where=(tp + fp) > 0), recall

    def f1_threshold(self) -> float:
        """The bin edge at the F1-max point (NaN without positive pixels); ties go to the
        highest edge. A pixel is anomalous when its score is >= this edge."""
        precision, recall = self.pr_curve()
        if not self.pos.any():
            return math.nan
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        k = int(np.flatnonzero(f1 == f1.max())[0])  # k bins from the top: edge of bin (bins - k)
        return float(self.lo + (self.bins - k) * (self.hi - self.lo) / self.bins)

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
        auc = float(np.trapezoid(recall, fpr))
        region = np.stack(self.region_hists)
        sizes = region.sum(axis=1, keepdims=True)
        pro = np.concatenate([np.zeros((region.shape[0], 1)), np.cumsum(region[:, ::-1], axis=1) / sizes], axis=1)
        return {"f1_max": f1_from_pr(precision, recall), "auroc": auc, "ap": ap,
                "aupro": _pro_area(fpr, pro.mean(axis=0), self.fpr_limit)}


def sample_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Image-level F1-max, AUROC and AP."""
    return {"f1_max": f1_max(labels, scores), "auroc": auroc(labels, scores), "ap": average_precision(labels, scores)}


def pixel_metrics_exact(masks_nhw: np.ndarray, maps_nhw: np.ndarray) -> dict[str, float]:
    """Pixel-level F1-max, AUROC, AP, AUPRO on all pixels at once (small data only)."""
    return {"f1_max": f1_max(masks_nhw, maps_nhw), "auroc": auroc(masks_nhw, maps_nhw),
            "ap": average_precision(masks_nhw, maps_nhw), "aupro": aupro(masks_nhw, maps_nhw)}

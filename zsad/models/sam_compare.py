"""How closely two sets of SAM masks agree (tests and the CUDA equality check)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bitmasks import popcount_rows


@dataclass(frozen=True)
class MaskAgreement:
    """Masks ``a`` against masks ``b`` (each a ``SamMasks``).

    Attributes:
        n_a, n_b: how many masks each has.
        identical: the same packed masks, scores and boxes, bit for bit.
        min_iou: the smallest IoU of mask i of ``a`` with mask i of ``b`` (same count only, else nan).
        max_score_diff: the largest |score difference| of mask i (same count only, else nan).
        matched: the fraction of ``b``'s masks that some mask of ``a`` covers with IoU >= 0.9.
    """

    n_a: int
    n_b: int
    identical: bool
    min_iou: float
    max_score_diff: float
    matched: float

    def close(self, min_iou: float = 0.999, score_tol: float = 1e-5) -> bool:
        """The same masks in the same order, each within the tolerance (README "SAM's automatic masks")."""
        return self.n_a == self.n_b and self.min_iou >= min_iou and self.max_score_diff <= score_tol


def _iou(packed_a: np.ndarray, packed_b: np.ndarray) -> np.ndarray:
    union = popcount_rows(packed_a | packed_b)
    return np.where(union > 0, popcount_rows(packed_a & packed_b) / np.maximum(union, 1), 1.0)


def compare_masks(a, b) -> MaskAgreement:
    """``MaskAgreement`` of two ``SamMasks`` of the same image.

    Example:
        >>> from zsad.models.sam_masks import SamMasks
        >>> m = SamMasks(np.array([[255], [15]], np.uint8), np.array([0.9, 0.8], np.float32),
        ...              np.zeros((2, 4), np.int32), 2, 4)
        >>> n = SamMasks(np.array([[255], [31]], np.uint8), np.array([0.9, 0.8], np.float32),
        ...              np.zeros((2, 4), np.int32), 2, 4)
        >>> r = compare_masks(m, n)   # mask 1: 4 of 5 pixels shared
        >>> (r.identical, r.min_iou, r.matched)
        (False, 0.8, 0.5)
    """
    same = len(a.scores_n) == len(b.scores_n)
    identical = same and all(np.array_equal(x, y) for x, y in ((a.masks_packed, b.masks_packed),
                                                                (a.scores_n, b.scores_n), (a.boxes_xyxy, b.boxes_xyxy)))
    min_iou = float(_iou(a.masks_packed, b.masks_packed).min(initial=1.0)) if same else float("nan")
    diff = float(np.abs(a.scores_n - b.scores_n).max(initial=0.0)) if same else float("nan")
    hits = sum(bool(len(a.scores_n) and _iou(a.masks_packed, row[None]).max() >= 0.9) for row in b.masks_packed)
    return MaskAgreement(len(a.scores_n), len(b.scores_n), identical, min_iou, diff, hits / max(1, len(b.scores_n)))

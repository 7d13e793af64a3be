"""Float16 bins and ground truth laid out for them: what the streamed pixel metrics count.

Every map value is rounded to float16 and counted in the bin of its bit pattern (for
non-negative float16 numbers the patterns are ordered as the numbers are), so histograms keep
every distinct float16 value apart and metrics computed from them are exact on float16-rounded
maps. ``GroundTruth`` is an image's mask prepared once (regions, weights), ``CellTruth`` the
same laid out along the covered cells of its maps (``zsad.pixelmaps.PastedMap``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), bool)


def round_to_float16(values: np.ndarray) -> np.ndarray:
    """float32 -> float16, rounding to nearest even: the same bits as ``astype(np.float16)``
    (subnormals, overflow to inf, NaN, -0; ``tests/test_sweep.py`` checks ties and extremes),
    through torch's vectorised conversion, ~100x numpy's on x86 (the cast was a third of a
    sweep's time). Returns a float16 array."""
    import torch  # here, not at module level: only metric passes need it
    return torch.from_numpy(np.ascontiguousarray(values, np.float32)).to(torch.float16).numpy()


def float16_bins_of(halves: np.ndarray) -> np.ndarray:
    """``float16_bins`` of values already rounded to float16."""
    bits = np.asarray(halves, np.float16).view(np.uint16)
    if bits.size and bits.max() > 0x7C00:  # a NaN, or a sign bit: negatives count as 0
        if ((bits & 0x7FFF) > 0x7C00).any():
            raise ValueError("anomaly maps contain NaN")
        bits = np.where(bits >= 0x8000, np.uint16(0), bits)
    return bits


def float16_bins(values: np.ndarray) -> np.ndarray:
    """Each value's bin: the bit pattern of the value rounded to float16 (negatives count as 0).

    For non-negative float16 numbers the bit patterns are ordered as the numbers are, so a
    histogram over them keeps every distinct float16 value apart: metrics computed from it are
    exact for maps held at float16 precision, whatever their range (1e-7 ... 65504). Returns
    uint16 (``np.bincount`` takes it as it is).

    Example:
        >>> float16_bins(np.array([0.0, 1e-4, 0.5, 1.0, -0.5])).tolist()
        [0, 1678, 14336, 15360, 0]
    """
    return float16_bins_of(round_to_float16(values))


FLOAT16_BINS = 0x7C00 + 1  # the finite non-negative float16 patterns, then +inf
BIN_VALUES = np.arange(FLOAT16_BINS, dtype=np.uint16).view(np.float16).astype(np.float64)  # value of each bin


@dataclass(frozen=True)
class GroundTruth:
    """One image's ground truth, prepared once for every map scored against it (the variants
    of a sweep share the mask decode, the region labelling and the per-pixel region weights).

    Attributes:
        mask_hw: (H, W) bool, True on defect pixels.
        weight_hw: (H, W) float64, ``1 / size`` of the pixel's 8-connected region on defect
            pixels, 0 elsewhere (filled only inside the mask's bounding box); None when empty.
        n_regions: how many regions; n_pos: how many defect pixels; weight_total: the sum of
            ``weight_hw`` (``n_regions`` up to rounding).
    """

    mask_hw: np.ndarray
    weight_hw: np.ndarray | None
    n_regions: int
    n_pos: int
    weight_total: float

    @classmethod
    def from_mask(cls, mask_hw: np.ndarray) -> "GroundTruth":
        """Regions are labelled inside the mask's bounding box only (the same regions).

        Example:
            >>> gt = GroundTruth.from_mask(np.array([[1, 0, 0], [0, 0, 1]], bool))   # two regions
            >>> gt.n_regions, gt.n_pos, gt.weight_hw.tolist()
            (2, 2, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        """
        mask = np.asarray(mask_hw, bool)
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return cls(mask, None, 0, 0, 0.0)
        cols = np.flatnonzero(mask[rows[0]: rows[-1] + 1].any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        labels, n = ndimage.label(mask[box], structure=EIGHT)
        size = np.bincount(labels.ravel()).astype(np.float64)
        inv = np.zeros_like(size)
        inv[1:] = 1.0 / size[1:]
        weight = np.zeros(mask.shape, np.float64)  # calloc: pages outside the box are never touched
        weight[box] = inv[labels]
        return cls(mask, weight, int(n), int(size[1:].sum()), float(weight[box][mask[box]].sum()))


@dataclass(frozen=True)
class CellTruth:
    """An image's ground truth laid out along the covered cells of its maps (every map of an
    image pasted from the same tiles has the same cells): built once per image, it turns each
    map's pixel metrics into one conversion, one ``bincount`` and a gather.

    Attributes:
        gt: the ``GroundTruth``; boxes: the cells' (y0, y1, x0, x1); offsets: each cell's start
            in the flat buffer of covered pixels (``size`` of them).
        mask_codes: (size,) int32, ``FLOAT16_BINS`` on defect pixels and 0 elsewhere (None when
            no covered pixel is a defect); defect_idx, defect_weight: the covered defect pixels'
            flat indices and region weights.
        pos_out, neg_out: defect and normal pixels outside the cells (counted in bin 0);
        weight_out: their region weight; n_regions: the image's regions.
    """

    gt: GroundTruth
    boxes: tuple[tuple[int, int, int, int], ...]
    offsets: tuple[int, ...]
    size: int
    mask_codes: np.ndarray | None
    defect_idx: np.ndarray
    defect_weight: np.ndarray
    pos_out: int
    neg_out: int
    weight_out: float
    n_regions: int

    @classmethod
    def layout(cls, gt: GroundTruth, boxes: Iterable[tuple[int, int, int, int]]) -> "CellTruth":
        boxes = tuple(tuple(int(v) for v in b) for b in boxes)
        sizes = [(y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes]
        offsets = tuple(int(v) for v in np.cumsum([0] + sizes[:-1])) if boxes else ()
        size = int(sum(sizes))
        h, w = gt.mask_hw.shape
        if gt.n_pos:
            mask = np.concatenate([gt.mask_hw[y0:y1, x0:x1].ravel() for y0, y1, x0, x1 in boxes]) if boxes else \
                np.zeros(0, bool)
            idx = np.flatnonzero(mask)
            weight = np.concatenate([gt.weight_hw[y0:y1, x0:x1].ravel() for y0, y1, x0, x1 in boxes])[idx] \
                if boxes else np.zeros(0)
        else:
            mask, idx, weight = None, np.zeros(0, np.intp), np.zeros(0)
        pos_in = int(idx.size)
        pos_out = gt.n_pos - pos_in
        codes = mask.astype(np.int32) * FLOAT16_BINS if pos_in else None
        weight_out = max(0.0, gt.weight_total - float(weight.sum())) if pos_out else 0.0
        return cls(gt, boxes, offsets, size, codes, idx, weight, pos_out, h * w - size - pos_out, weight_out,
                   gt.n_regions)

    def bins(self, cells) -> np.ndarray:
        """The cells' values (in this layout's order) as one flat array of float16 bins (uint16)."""
        buf = np.empty(self.size, np.float32)
        for ((y0, y1, x0, x1), values), off in zip(cells, self.offsets):
            buf[off: off + (y1 - y0) * (x1 - x0)] = np.asarray(values, np.float32).ravel()
        return float16_bins_of(round_to_float16(buf))



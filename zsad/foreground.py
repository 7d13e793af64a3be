"""Foreground from SAM masks filtered by IS-Net coverage (seed, "Foreground extraction")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .bitmasks import pack_masks, popcount_rows, unpack_masks
from .config import ForegroundConfig


@dataclass(frozen=True)
class Foreground:
    """Foreground of one image.

    Attributes:
        mask_hw: (H, W) bool, union of the kept SAM masks.
        labels_hw: (H, W) int32, connected components of ``mask_hw`` numbered 1..C, 0 = background.
        parts_c: (C,) int32, number of kept SAM masks assigned to each component.
        kept_n: (N,) bool, which SAM masks were kept.
        component_n: (N,) int32, component of each kept mask (the one holding most of its
            pixels), 0 for masks not kept.
    """

    mask_hw: np.ndarray
    labels_hw: np.ndarray
    parts_c: np.ndarray
    kept_n: np.ndarray
    component_n: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.parts_c.shape[0])


def isnet_foreground(isnet_u8_hw: np.ndarray, threshold: float) -> np.ndarray:
    """Threshold an IS-Net map stored as uint8 (0..255 = probability 0..1).

    Example:
        >>> isnet_foreground(np.array([[127, 128]], np.uint8), 0.5).tolist()
        [[False, True]]
    """
    if isnet_u8_hw.dtype != np.uint8 or isnet_u8_hw.ndim != 2:
        raise TypeError(f"IS-Net map must be a 2-D uint8 array, got {isnet_u8_hw.dtype} {isnet_u8_hw.shape}")
    return isnet_u8_hw.astype(np.float32) / 255.0 >= threshold


def coverage_keep(masks_nhw: np.ndarray, fg_hw: np.ndarray, min_coverage: float) -> np.ndarray:
    """Which masks lie at least ``min_coverage`` inside ``fg_hw``.

    Exact integer comparison ``inside * 10**6 >= round(min_coverage * 10**6) * area``, so that
    a mask exactly at the threshold is kept. Empty masks are never kept.

    Args:
        masks_nhw: (N, H, W) bool.
        fg_hw: (H, W) bool.
        min_coverage: fraction in [0, 1] (seed: 0.8).

    Returns:
        (N,) bool.

    Example:
        >>> m = np.zeros((2, 1, 10), bool); m[0, 0, :10] = True; m[1, 0, :5] = True
        >>> fg = np.zeros((1, 10), bool); fg[0, :8] = True
        >>> coverage_keep(m, fg, 0.8).tolist()   # 8/10 = 80 % kept, 5/5 kept
        [True, True]
    """
    if masks_nhw.ndim != 3 or masks_nhw.shape[1:] != fg_hw.shape:
        raise ValueError(f"masks (N,H,W) {masks_nhw.shape} do not match foreground (H,W) {fg_hw.shape}")
    return coverage_keep_packed(pack_masks(masks_nhw), fg_hw, min_coverage)


def coverage_keep_packed(masks_packed: np.ndarray, fg_hw: np.ndarray, min_coverage: float) -> np.ndarray:
    """``coverage_keep`` on bit-packed masks ((N, ceil(H*W/8)) uint8, ``zsad.bitmasks``): areas and
    overlaps are bit counts of the packed bytes, no mask is unpacked."""
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")
    fg_packed = pack_masks(fg_hw[None])
    if masks_packed.ndim != 2 or masks_packed.shape[1] != fg_packed.shape[1]:
        raise ValueError(f"packed masks {masks_packed.shape} do not match a {fg_hw.shape} foreground "
                         f"({fg_packed.shape[1]} bytes per mask)")
    area = popcount_rows(masks_packed)
    inside = popcount_rows(masks_packed & fg_packed)
    scale = 10**6
    return (area > 0) & (inside * scale >= int(round(min_coverage * scale)) * area)


def extract_foreground(masks_nhw: np.ndarray, isnet_u8_hw: np.ndarray, cfg: ForegroundConfig) -> Foreground:
    """``extract_foreground_packed`` of (N, H, W) bool masks."""
    return extract_foreground_packed(pack_masks(masks_nhw.astype(bool, copy=False)), isnet_u8_hw, cfg)


def extract_foreground_packed(masks_packed: np.ndarray, isnet_u8_hw: np.ndarray, cfg: ForegroundConfig) -> Foreground:
    """Seed step 1: keep SAM masks >= ``cfg.min_coverage`` inside IS-Net's foreground, union,
    connected components, and SAM parts per component. The union is an OR of the packed bytes;
    each kept mask is unpacked alone, once, so memory holds one (H, W) mask at a time.

    Args:
        masks_packed: (N, ceil(H*W/8)) uint8 bit-packed SAM masks (N may be 0), as the store keeps them.
        isnet_u8_hw: (H, W) uint8 IS-Net probability map.
        cfg: thresholds.
    """
    fg_isnet = isnet_foreground(isnet_u8_hw, cfg.isnet_threshold)
    h, w = fg_isnet.shape
    n_masks = masks_packed.shape[0]
    kept = coverage_keep_packed(masks_packed, fg_isnet, cfg.min_coverage) if n_masks else np.zeros(0, bool)
    union_packed = np.bitwise_or.reduce(masks_packed[kept], axis=0, keepdims=True) if kept.any() else None
    union = unpack_masks(union_packed, h, w)[0] if union_packed is not None else np.zeros(fg_isnet.shape, bool)
    structure = ndimage.generate_binary_structure(2, cfg.connectivity)
    labels, n = ndimage.label(union, structure=structure)
    component = np.zeros(n_masks, np.int32)
    for i in np.flatnonzero(kept):
        counts = np.bincount(labels[unpack_masks(masks_packed[i:i + 1], h, w)[0]], minlength=n + 1)
        counts[0] = 0
        component[i] = int(np.argmax(counts))
    parts = np.bincount(component[kept], minlength=n + 1)[1:].astype(np.int32)
    return Foreground(union, labels.astype(np.int32), parts, kept, component)

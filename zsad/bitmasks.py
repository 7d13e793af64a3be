"""Bit-packed masks, the form the store keeps: (N, ceil(H*W/8)) uint8, each mask's pixels in
row-major order, most significant bit first, the last byte zero-padded (``np.packbits``).

Example:
    >>> m = np.zeros((1, 2, 5), bool); m[0, 0, 0] = m[0, 1, 4] = True
    >>> pack_masks(m).tolist()               # bits 1000000001 -> 0b10000000, 0b01000000
    [[128, 64]]
    >>> bool((unpack_masks(pack_masks(m), 2, 5) == m).all())
    True
    >>> popcount_rows(pack_masks(m)).tolist()
    [2]
"""

from __future__ import annotations

import numpy as np

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def pack_masks(masks_nhw: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, ceil(H*W/8)) uint8."""
    n, h, w = masks_nhw.shape
    return np.packbits(masks_nhw.reshape(n, h * w), axis=1)


def unpack_masks(packed: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, ceil(H*W/8)) uint8 -> (N, H, W) bool."""
    return np.unpackbits(packed, axis=1, count=h * w).reshape(-1, h, w).astype(bool)


def popcount_rows(packed: np.ndarray) -> np.ndarray:
    """(N, B) uint8 -> (N,) int64 number of set bits per row (a mask's area, without unpacking)."""
    return np.bitwise_count(packed).sum(axis=1, dtype=np.int64)


def pack_masks_torch(masks_nhw):
    """The same packing on a torch device: (N, H, W) bool tensor -> (N, ceil(H*W/8)) uint8
    tensor, equal to ``pack_masks`` of its host copy (integer operations only)."""
    import torch
    n = masks_nhw.shape[0]
    flat = masks_nhw.reshape(n, masks_nhw.shape[1] * masks_nhw.shape[2])
    pad = (-flat.shape[1]) % 8
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=flat.device)
    return (flat.view(n, flat.shape[1] // 8, 8).to(torch.uint8) * weights).sum(dim=2, dtype=torch.uint8)

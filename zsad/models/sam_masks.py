"""What SAM's automatic mask generation gives for one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bitmasks import unpack_masks


@dataclass(frozen=True)
class SamMasks:
    """SAM's automatic masks for one image, sorted by decreasing area.

    Attributes:
        masks_packed: (N, ceil(H*W/8)) uint8, bit-packed as the store keeps them (``zsad.bitmasks``).
        scores_n: (N,) float32 predicted IoU.
        boxes_xyxy: (N, 4) int32, exclusive ends.
        height, width: the image's size.
    """

    masks_packed: np.ndarray
    scores_n: np.ndarray
    boxes_xyxy: np.ndarray
    height: int
    width: int

    @property
    def masks_nhw(self) -> np.ndarray:
        """(N, H, W) bool (unpacked on each call)."""
        return unpack_masks(self.masks_packed, self.height, self.width)

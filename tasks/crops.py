"""Tile crops of one image, read from the tiles stage.

Encoders run per image by default (batches start at the image's first tile), exactly as the
one-call scorer does: GEMM results depend on a row's position in its batch, so batching tiles
across images (``images_per_batch`` > 1, for GPUs) makes results differ in the last bits; such
runs get their own stage hash.
"""

from __future__ import annotations

import numpy as np

from stores import StageStore, Unit, unit_key
from stores.schema import BOXES
from zsad.tiling import crop_tiles

from .decoded import image_of


def image_crops(store: StageStore, tiles_hash: str, unit: Unit, image: dict) -> list[np.ndarray]:
    """The tiles of a registered image (``image``: its record, path and sha256)."""
    boxes = store.read_array(unit_key("tiles", tiles_hash, unit), BOXES)
    return crop_tiles(image_of(image), boxes)


def split_rows(rows: np.ndarray, crops: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Cut a batch computed over several images' tiles back into one array per image."""
    return np.split(rows, np.cumsum([len(c) for c in crops])[:-1])

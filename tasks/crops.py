"""Tile crops of one image, read from the tiles stage.

Encoders run per image by default (batches start at the image's first tile), exactly as the
one-call scorer does: GEMM results depend on a row's position in its batch, so batching tiles
across images (``images_per_batch`` > 1, for GPUs) makes results differ in the last bits; such
runs get their own stage hash.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import BOXES
from zsad.tiling import crop_tiles

from .decoded import image_of
from .runner import Item, ShardJob, StageResult, run_stage


def image_crops(store: StageStore, tiles_hash: str, unit: Unit, image: dict) -> list[np.ndarray]:
    """The tiles of a registered image (``image``: its record, path and sha256)."""
    boxes = store.read_array(unit_key("tiles", tiles_hash, unit), BOXES)
    return crop_tiles(image_of(image), boxes)


def split_rows(rows: np.ndarray, crops: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Cut a batch computed over several images' tiles back into one array per image."""
    return np.split(rows, np.cumsum([len(c) for c in crops])[:-1])


def run_tile_stage(job: ShardJob, stage: str, units: tuple[Unit, ...],
                   write_images: Callable[[StageStore, Any, list[Item]], None],
                   setup: Callable[[], Any]) -> StageResult:
    """``run_stage`` for a tile encoder: ``write_images(store, model, [(unit, sha256, attrs), ...])``
    encodes the tiles of the config's ``images_per_batch`` images in shared batches and writes their units;
    one image at a time is the exact per-image mode (and how a failed batch finds its bad image)."""
    def one(store: StageStore, model: Any, unit: Unit, sha: str, attrs: dict) -> None:
        write_images(store, model, [(unit, sha, attrs)])

    return run_stage(job, stage, units, one, setup, decodes=True, compute_group=write_images,
                     group=job.cfg.images_per_batch)

"""Tile boxes per foreground component (seed, "Image tiling")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .config import TilingConfig

SQUARE, ELONGATED, WHOLE_IMAGE = 0, 1, 2


@dataclass(frozen=True)
class Tiles:
    """Tiles of one image.

    Attributes:
        boxes_xyxy: (T, 4) int32, ``x0, y0, x1, y1`` with exclusive ``x1, y1``, inside the image.
        component_t: (T,) int32, the foreground component (1..C) each tile belongs to; 1 for the
            whole-image fallback.
        kind_t: (T,) int8, ``SQUARE`` (0), ``ELONGATED`` (1) or ``WHOLE_IMAGE`` (2).
    """

    boxes_xyxy: np.ndarray
    component_t: np.ndarray
    kind_t: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])


def place_interval(center: float, side: int, limit: int) -> int:
    """Start of an interval of length ``side`` centred on ``center``, shifted inside [0, limit).

    Example:
        >>> place_interval(50.0, 20, 100), place_interval(5.0, 20, 100), place_interval(99.0, 20, 100)
        (40, 0, 80)
    """
    if side > limit:
        raise ValueError(f"interval of {side} px does not fit in {limit} px")
    start = int(math.floor(center - side / 2 + 0.5))
    return min(max(start, 0), limit - side)


def _box(cy: float, cx: float, side: int, h: int, w: int) -> list[int]:
    y0, x0 = place_interval(cy, side, h), place_interval(cx, side, w)
    return [x0, y0, x0 + side, y0 + side]


def along_axis_centres(start: int, stop: int, stride: float) -> list[float]:
    """Centres spaced ``stride`` apart whose central ``stride``-wide bands cover [start, stop).

    Example:
        >>> along_axis_centres(0, 100, 25.0)
        [12.5, 37.5, 62.5, 87.5]
    """
    n = max(1, math.ceil((stop - start) / stride))
    return [start + stride / 2 + k * stride for k in range(n)]


def _elongated_boxes(sl: tuple[slice, slice], side: int, stride: float, h: int, w: int) -> list[list[int]]:
    ys, xs = sl
    if (xs.stop - xs.start) >= (ys.stop - ys.start):
        cy = (ys.start + ys.stop) / 2
        return [_box(cy, cx, side, h, w) for cx in along_axis_centres(xs.start, xs.stop, stride)]
    cx = (xs.start + xs.stop) / 2
    return [_box(cy, cx, side, h, w) for cy in along_axis_centres(ys.start, ys.stop, stride)]


def component_tiles(sl: tuple[slice, slice], parts: int, cfg: TilingConfig, h: int, w: int
                    ) -> tuple[list[list[int]], int]:
    """Boxes for one component with bounding slices ``sl`` and ``parts`` SAM parts.

    * Default: one square of side ``max(bbox long side, min_tile)`` centred on the bbox.
    * Elongated (aspect > ``elongated_aspect`` and parts > ``elongated_min_parts``): squares of
      side ``max(bbox short side, min_tile)`` along the long axis, centres ``short/2`` apart
      starting ``short/4`` into the bbox, so each point of the bbox is in the central band of
      some tile (the image border may push a tile inward).
    * A square never exceeds the image: its side is capped at ``min(H, W)``; a component whose
      long side exceeds that cap is tiled along its long axis with capped squares at half-side
      stride. Images smaller than ``min_tile`` therefore get tiles of ``min(H, W)``, which the
      models resize up.
    """
    bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
    cap = min(h, w)
    long_side, short_side = max(bh, bw), min(bh, bw)
    if long_side / short_side > cfg.elongated_aspect and parts > cfg.elongated_min_parts:
        side = min(max(short_side, cfg.min_tile), cap)
        return _elongated_boxes(sl, side, short_side / 2, h, w), ELONGATED
    side = min(max(long_side, cfg.min_tile), cap)
    if long_side > side:
        return _elongated_boxes(sl, side, side / 2, h, w), ELONGATED
    cy, cx = (sl[0].start + sl[0].stop) / 2, (sl[1].start + sl[1].stop) / 2
    return [_box(cy, cx, side, h, w)], SQUARE


def tile_image(labels_hw: np.ndarray, parts_c: np.ndarray, cfg: TilingConfig) -> Tiles:
    """Seed step 2: tiles for every component of ``labels_hw``; the whole image if there is none.

    Args:
        labels_hw: (H, W) int component labels, 0 = background.
        parts_c: (C,) SAM parts per component (``Foreground.parts_c``).
        cfg: tile geometry.
    """
    h, w = labels_hw.shape
    slices = ndimage.find_objects(labels_hw)
    if len(slices) != len(parts_c):
        raise ValueError(f"{len(slices)} components in labels but {len(parts_c)} part counts")
    boxes, comps, kinds = [], [], []
    for c, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        bxs, kind = component_tiles(sl, int(parts_c[c - 1]), cfg, h, w)
        boxes += bxs
        comps += [c] * len(bxs)
        kinds += [kind] * len(bxs)
    if not boxes:
        boxes, comps, kinds = [[0, 0, w, h]], [1], [WHOLE_IMAGE]
    return Tiles(np.asarray(boxes, np.int32).reshape(-1, 4), np.asarray(comps, np.int32),
                 np.asarray(kinds, np.int8))


def crop_tiles(image_hw3: np.ndarray, boxes_xyxy: np.ndarray) -> list[np.ndarray]:
    """Crops of ``image_hw3`` (uint8) for each box; views, not copies."""
    return [image_hw3[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes_xyxy.tolist()]

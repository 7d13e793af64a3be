"""Pixel-level maps: fusion over prompts, scaling by tile score, pasting (seed, "Pixel-level
predictor" and "Prediction aggregation")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def fuse_prompt_maps(maps_lhw: np.ndarray, method: str = "harmonic") -> np.ndarray:
    """Combine L per-prompt probability maps into one.

    ``harmonic``: ``L / sum(1 / p_l)``, defined as 0 wherever any ``p_l`` is 0 (its limit);
    ``arithmetic``: mean; ``geometric``: ``exp(mean(log p_l))``, 0 where any is 0.

    Args:
        maps_lhw: (L, h, w) or (T, L, h, w) probabilities in [0, 1] (any float dtype).
        method: ``"harmonic"``, ``"arithmetic"`` or ``"geometric"``.

    Returns:
        float32 array without the L axis.

    Example:
        >>> round(fuse_prompt_maps(np.array([[[0.5]], [[0.25]]])).item(), 6)   # 2 / (2 + 4)
        0.333333
        >>> fuse_prompt_maps(np.array([[[0.0]], [[0.9]]])).item()
        0.0
    """
    p = np.asarray(maps_lhw, np.float32)
    if p.ndim not in (3, 4):
        raise ValueError(f"expected (L,h,w) or (T,L,h,w) maps, got shape {p.shape}")
    axis = p.ndim - 3
    if method == "arithmetic":
        return p.mean(axis=axis, dtype=np.float32)
    if method not in ("harmonic", "geometric"):
        raise ValueError(f"fusion must be 'harmonic', 'arithmetic' or 'geometric', got {method!r}")
    zero = (p <= 0).any(axis=axis)
    safe = np.where(p > 0, p, np.float32(1.0))
    if method == "harmonic":
        out = np.float32(p.shape[axis]) / np.reciprocal(safe).sum(axis=axis, dtype=np.float32)
    else:
        out = np.exp(np.log(safe).mean(axis=axis, dtype=np.float32))
    out[zero] = 0.0
    return out.astype(np.float32, copy=False)


def resize_map(map_hw: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, as ``F.interpolate(align_corners=False)``), float32."""
    if tuple(map_hw.shape) == tuple(size_hw):
        return np.asarray(map_hw, np.float32)
    import torch  # here: re-aggregation workers that never resize need not import torch (~1-3 s)
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(map_hw, np.float32))[None, None]
    return F.interpolate(t, size=tuple(size_hw), mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass(frozen=True)
class PastedMap:
    """An (H, W) anomaly map as its covered rectangles: 0 wherever no tile lies.

    Tiles rarely cover the whole image; keeping only the covered cells (the grid the boxes'
    edges cut the image into, each covered by a fixed set of tiles) makes scaling, binning and
    metrics cost what the tiles cover, and ``full()`` gives back exactly ``paste_tiles``' map.

    Attributes:
        cells: ((y0, y1, x0, x1), values (y1 - y0, x1 - x0) float32) per covered cell.
        image_hw: (H, W) of the image.
    """

    cells: tuple[tuple[tuple[int, int, int, int], np.ndarray], ...]
    image_hw: tuple[int, int]

    def full(self) -> np.ndarray:
        """The (H, W) float32 map (zeros outside the cells)."""
        out = np.zeros(self.image_hw, np.float32)
        for (y0, y1, x0, x1), values in self.cells:
            out[y0:y1, x0:x1] = values
        return out

    @property
    def boxes(self) -> tuple[tuple[int, int, int, int], ...]:
        """The cells' (y0, y1, x0, x1), in order (``zsad.metrics.CellTruth.layout`` takes them)."""
        return tuple(box for box, _ in self.cells)


def paste_cells(tile_maps: list[np.ndarray] | np.ndarray, boxes_xyxy: np.ndarray,
                image_hw: tuple[int, int]) -> PastedMap:
    """``paste_tiles`` as covered cells: a cell under one tile takes the tile's values as they
    are, one under several their float64 mean in tile order (what ``paste_tiles`` computes).

    Example:
        >>> m = paste_cells([np.ones((1, 2)), np.zeros((1, 2))], np.array([[0, 0, 2, 1], [1, 0, 3, 1]]), (1, 4))
        >>> [(box, v.tolist()) for box, v in m.cells], m.full().tolist()
        ([((0, 1, 0, 1), [[1.0]]), ((0, 1, 1, 2), [[0.5]]), ((0, 1, 2, 3), [[0.0]])], [[1.0, 0.5, 0.0, 0.0]])
    """
    boxes = clip_boxes(boxes_xyxy, image_hw)
    resized = [resize_map(np.asarray(m), (y1 - y0, x1 - x0)) if (y1 > y0 and x1 > x0) else None
               for m, (x0, y0, x1, y1) in zip(tile_maps, boxes)]
    if len(boxes) > 4:  # many overlapping tiles cut ~(2T)^2 cells: average them densely, then cut
        return _dense_cells(resized, boxes, tuple(image_hw))
    cells = []
    for box, parts in cell_parts(resized, boxes_xyxy, image_hw):
        if len(parts) == 1:
            values = np.asarray(parts[0], np.float32)
        else:
            total = np.zeros(parts[0].shape, np.float64)
            for part in parts:
                total += part
            values = (total / len(parts)).astype(np.float32)
        cells.append((box, values))
    return PastedMap(tuple(cells), tuple(image_hw))


def _dense_cells(resized: list, boxes: list[list[int]], image_hw: tuple[int, int]) -> PastedMap:
    """``paste_cells`` by one float64 sum over the tiles' bounding region, in tile order (the
    same additions, in the same order, per pixel: bit for bit the per-cell result), cut into
    the same cells."""
    used = [(t, b) for t, b in zip(resized, boxes) if t is not None]
    if not used:
        return PastedMap((), image_hw)
    oy, ox = min(b[1] for _, b in used), min(b[0] for _, b in used)
    shape = (max(b[3] for _, b in used) - oy, max(b[2] for _, b in used) - ox)
    total, count = np.zeros(shape, np.float64), np.zeros(shape, np.int64)
    for t, (x0, y0, x1, y1) in used:
        total[y0 - oy: y1 - oy, x0 - ox: x1 - ox] += t
        count[y0 - oy: y1 - oy, x0 - ox: x1 - ox] += 1
    mean = (total / np.maximum(count, 1)).astype(np.float32)
    ys, xs, covers = _coverage(boxes, [t is not None for t in resized])
    cells = tuple(((ys[i], ys[i + 1], xs[j], xs[j + 1]), mean[ys[i] - oy: ys[i + 1] - oy, xs[j] - ox: xs[j + 1] - ox])
                  for i, j in zip(*np.nonzero(covers.any(axis=2))))
    return PastedMap(cells, image_hw)


def clip_boxes(boxes_xyxy: np.ndarray, image_hw: tuple[int, int]) -> list[list[int]]:
    """(T, 4) xyxy boxes clipped to the image, as lists of ints."""
    h, w = image_hw
    return np.clip(np.asarray(boxes_xyxy, np.int64).reshape(-1, 4), 0, [w, h, w, h]).tolist()


def cell_parts(resized: list, boxes_xyxy: np.ndarray, image_hw: tuple[int, int]):
    """The grid the boxes' edges cut the image into: per covered cell, ``((y0, y1, x0, x1),
    [the part of each tile map covering it, in tile order])``. ``resized``: each tile's map at
    its box's size (None for an empty box); numpy arrays or torch tensors alike."""
    boxes = clip_boxes(boxes_xyxy, image_hw)
    ys, xs, covers = _coverage(boxes, [t is not None for t in resized])
    for i, j in zip(*np.nonzero(covers.any(axis=2))):
        cy0, cy1, cx0, cx1 = ys[i], ys[i + 1], xs[j], xs[j + 1]
        parts = [resized[t][cy0 - boxes[t][1]: cy1 - boxes[t][1], cx0 - boxes[t][0]: cx1 - boxes[t][0]]
                 for t in np.flatnonzero(covers[i, j])]
        yield (cy0, cy1, cx0, cx1), parts


def _coverage(boxes: list[list[int]], present: list[bool]) -> tuple[list[int], list[int], np.ndarray]:
    """The cut lines ``ys``, ``xs`` of clipped xyxy ``boxes`` and ``covers[i, j, t]``: tile t
    (``present``) covers cell (i, j), which spans ys[i]..ys[i + 1] and xs[j]..xs[j + 1]. One array
    op instead of testing every tile at every cell (T overlapping tiles cut up to (2T)^2 cells)."""
    ys = sorted({v for b in boxes for v in (b[1], b[3])})
    xs = sorted({v for b in boxes for v in (b[0], b[2])})
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    iy0, iy1 = np.searchsorted(ys, b[:, 1]), np.searchsorted(ys, b[:, 3])
    ix0, ix1 = np.searchsorted(xs, b[:, 0]), np.searchsorted(xs, b[:, 2])
    rows, cols = np.arange(max(len(ys) - 1, 0))[:, None, None], np.arange(max(len(xs) - 1, 0))[None, :, None]
    covers = (iy0 <= rows) & (rows < iy1) & (ix0 <= cols) & (cols < ix1) & np.asarray(present, bool)
    return ys, xs, covers


def paste_tiles(tile_maps: list[np.ndarray] | np.ndarray, boxes_xyxy: np.ndarray,
                image_hw: tuple[int, int]) -> np.ndarray:
    """Put tile maps back into image space; overlapping pixels are averaged, uncovered are 0.

    Args:
        tile_maps: T maps, each resized to its box.
        boxes_xyxy: (T, 4) int boxes, exclusive ends.
        image_hw: (H, W).

    Returns:
        (H, W) float32.

    Example:
        >>> m = paste_tiles([np.ones((1, 2)), np.zeros((1, 2))], np.array([[0, 0, 2, 1], [1, 0, 3, 1]]), (1, 4))
        >>> m.tolist()
        [[1.0, 0.5, 0.0, 0.0]]
    """
    return paste_cells(tile_maps, boxes_xyxy, image_hw).full()


LOGIT_STEP = 1.0 / 8.0  # logit8: a logit is stored as round(logit / step) + 128, in [-16, 15.875]
MAP_DTYPES = ("logit8", "float16", "float32")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 sigmoid, computed in float64 in a form that never cancels: ``exp(x) / (1 + exp(x))``
    for negative ``x``, ``1 / (1 + exp(-x))`` otherwise. Relative error <= 2**-24 (float32's
    rounding) at every logit; ``0.5 * (1 + tanh(x / 2))`` in float32 lost 14 % at x = -15.6.

    Example:
        >>> round(float(_sigmoid(np.array([-16.0]))[0]) / 1.1253516e-07, 6)    # exp(-16) / (1 + exp(-16))
        1.0
    """
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def store_maps(logits: np.ndarray, dtype: str) -> np.ndarray:
    """CLIPSeg logits -> the cached array.

    ``logit8`` (default): the logit quantised to steps of 1/8 in [-16, 15.875], as uint8: 1 byte
    a value, smooth maps compress well, and low probabilities keep their size (the smallest is
    sigmoid(-16) = 1.1e-7, never 0, so a harmonic mean is never zeroed by underflow); the
    probability's relative error from the quantisation is at most 1/16 (6 %), and the
    dequantisation adds at most float32 rounding (``_sigmoid``). ``float16``/``float32``: probabilities.

    Example:
        >>> store_maps(np.array([-20.0, -10.0, 0.0, 0.06, 30.0]), "logit8").tolist()
        [0, 48, 128, 128, 255]
        >>> round(float(load_maps(store_maps(np.array([-10.0]), "logit8"))[0]), 7)   # sigmoid(-10)
        4.54e-05
    """
    if dtype == "logit8":
        q = np.rint(np.asarray(logits, np.float32) / LOGIT_STEP) + 128
        return np.clip(q, 0, 255).astype(np.uint8)
    if dtype in ("float16", "float32"):
        return _sigmoid(logits).astype(dtype)
    raise ValueError(f"map_dtype must be one of {MAP_DTYPES}, got {dtype!r}")


def _logit8_tables() -> dict[str, np.ndarray]:
    p = _sigmoid((np.arange(256, dtype=np.float32) - 128.0) * np.float32(LOGIT_STEP))  # all > 0
    return {"arithmetic": p, "harmonic": np.reciprocal(p), "geometric": np.log(p)}


_LOGIT8 = _logit8_tables()


def fuse_stored_maps(maps_tlhw: np.ndarray, method: str = "harmonic") -> np.ndarray:
    """``fuse_prompt_maps`` of cached maps: (T, L, h, w) as stored -> (T, h, w) float32.

    For ``logit8`` (uint8) maps, each value's probability, reciprocal or log comes from a
    256-entry table and the prompts are summed one at a time — no (T, L, h, w) float array is
    made (the sigmoid, the cast and the fusion were most of an aggregation's time). Other dtypes
    are probabilities and go through ``fuse_prompt_maps``.

    Example:
        >>> q = store_maps(np.array([[[[0.0]], [[2.0]]]]), "logit8")            # p = 0.5, 0.881
        >>> round(float(fuse_stored_maps(q)[0, 0, 0]), 4)                    # 2 / (2 + 1.135)
        0.6379
    """
    if maps_tlhw.dtype != np.uint8:
        return fuse_prompt_maps(load_maps(maps_tlhw), method)
    if method not in _LOGIT8:
        raise ValueError(f"fusion must be 'harmonic', 'arithmetic' or 'geometric', got {method!r}")
    table, n = _LOGIT8[method], maps_tlhw.shape[1]
    acc = np.zeros((maps_tlhw.shape[0],) + maps_tlhw.shape[2:], np.float32)
    for prompt in range(n):
        acc += table[maps_tlhw[:, prompt]]
    if method == "harmonic":
        return np.float32(n) / acc
    return acc / np.float32(n) if method == "arithmetic" else np.exp(acc / np.float32(n))


def load_maps(maps: np.ndarray) -> np.ndarray:
    """Inverse of ``store_maps``: float32 probabilities (uint8 arrays are ``logit8``)."""
    if maps.dtype == np.uint8:
        return _sigmoid((maps.astype(np.float32) - 128.0) * np.float32(LOGIT_STEP))
    return maps.astype(np.float32)

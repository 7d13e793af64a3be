"""Pixel-level maps: fusion over prompts, scaling by tile score, pasting (seed, "Pixel-level
predictor" and "Prediction aggregation")."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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
    t = torch.from_numpy(np.ascontiguousarray(map_hw, np.float32))[None, None]
    return F.interpolate(t, size=tuple(size_hw), mode="bilinear", align_corners=False)[0, 0].numpy()


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
    h, w = image_hw
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.int32)
    for m, (x0, y0, x1, y1) in zip(tile_maps, np.asarray(boxes_xyxy).tolist()):
        total[y0:y1, x0:x1] += resize_map(np.asarray(m), (y1 - y0, x1 - x0))
        count[y0:y1, x0:x1] += 1
    out = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return out.astype(np.float32)


LOGIT_STEP = 1.0 / 8.0  # logit8: a logit is stored as round(logit / step) + 128, in [-16, 15.875]
MAP_DTYPES = ("logit8", "float16", "float32")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float32)))).astype(np.float32)


def store_maps(logits: np.ndarray, dtype: str) -> np.ndarray:
    """CLIPSeg logits -> the cached array.

    ``logit8`` (default): the logit quantised to steps of 1/8 in [-16, 15.875], as uint8: 1 byte
    a value, smooth maps compress well, and low probabilities keep their size (the smallest is
    sigmoid(-16) = 1.1e-7, never 0, so a harmonic mean is never zeroed by underflow); the
    probability's relative error is at most 1/16 (6 %). ``float16``/``float32``: probabilities.

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

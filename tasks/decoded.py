"""Decoded images shared by the stages of a shard, decoded ahead while a model runs.

A precompute shard goes stage by stage (register, IS-Net, SAM, CLIP, CLIPSeg), and each of
those used to decode the image again: five decodes per image. Here an image is decoded once
per shard (keyed by path and sha256, so an edited file is never served stale) and kept while
the shard's images fit in ``ZSAD_DECODE_CACHE_MB`` (default 1024; an image that does not fit
is decoded again later rather than pushing out one the next stage needs first). While a model
works on image i, a background thread decodes images i+1 and i+2 (PIL releases the GIL).
"""

from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from zsad.datasets import load_image

LIMIT_BYTES = int(os.environ.get("ZSAD_DECODE_CACHE_MB", "1024")) * 2 ** 20
STATS: collections.Counter = collections.Counter()  # decoded / hits / prefetched: for tests and benchmarks
_CACHE: dict[tuple[str, str], np.ndarray] = {}
_PENDING: dict[tuple[str, str], Future] = {}
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"enabled": True, "bytes": 0, "pool": None}


def _pool() -> ThreadPoolExecutor:
    """The one background decoder, made on first use (importing this module starts no thread).
    Call with ``_LOCK`` held."""
    if _STATE["pool"] is None:
        _STATE["pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zsad-decode")
    return _STATE["pool"]


def enable(on: bool) -> None:
    """Turn sharing off (``False``: every stage decodes again, as before; benchmarks compare)."""
    start_shard()
    _STATE["enabled"] = on


def _key(attrs: dict[str, Any]) -> tuple[str, str]:
    return str(attrs["path"]), str(attrs.get("sha256", ""))


def remember(path: str, sha256: str, image: np.ndarray) -> None:
    """Keep a decoded image for the shard's later stages, if it fits."""
    with _LOCK:
        key = (str(path), sha256)
        if _STATE["enabled"] and key not in _CACHE and _STATE["bytes"] + image.nbytes <= LIMIT_BYTES:
            _CACHE[key] = image
            _STATE["bytes"] += image.nbytes


def _decode(path: str, sha256: str) -> np.ndarray:
    image = load_image(path)
    STATS["decoded"] += 1
    remember(path, sha256, image)
    return image


def image_of(attrs: dict[str, Any]) -> np.ndarray:
    """The (H, W, 3) uint8 image a registered unit's ``attrs`` name (path, sha256): from the
    shard's cache, from a decode already under way, or decoded now."""
    key = _key(attrs)
    with _LOCK:
        image, pending = _CACHE.get(key), _PENDING.pop(key, None)
    if image is not None:
        STATS["hits"] += 1
        return image
    if pending is not None:
        return pending.result()  # the background decode's errors surface here, for this image
    return _decode(*key)


def prefetch(attrs_list: list[dict[str, Any]]) -> None:
    """Start decoding these images in the background (those not cached or under way)."""
    if not _STATE["enabled"]:
        return
    with _LOCK:
        for attrs in attrs_list:
            key = _key(attrs)
            if key not in _CACHE and key not in _PENDING:
                _PENDING[key] = _pool().submit(_decode, *key)
                STATS["prefetched"] += 1


def start_shard() -> None:
    """Forget the previous shard's images (and let background decodes finish unread)."""
    with _LOCK:
        pending = list(_PENDING.values())
        _CACHE.clear()
        _PENDING.clear()
        _STATE["bytes"] = 0
    for f in pending:
        f.cancel()

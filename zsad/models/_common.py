"""Helpers shared by the model wrappers."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Deterministic random initialisation without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def quiet_logging(level: int = logging.WARNING) -> Iterator[None]:
    """Silence library log records up to ``level`` (open_clip's "no pretrained weights" note)."""
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, or None on another C library."""
    import ctypes
    import ctypes.util
    import platform
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Give the pages of freed heap memory back to the system (glibc's ``malloc_trim(0)``: the
    free space inside the heap too, not only at its top); False where there is no glibc.

    glibc serves allocations under its adaptive threshold (up to 32 MiB) from the heap, so the
    tens-of-MB full-resolution temporaries of a large image (a 25 MP mask is 25 MB) are freed
    into holes that the small results kept between them (each mask's packed bits) pin: scoring
    one 25 MP 4:3 image grew the process by 3.4 GB in SAM alone. Trimming after each chunk of
    masks keeps it to about one chunk (``benchmarks/bench_memory.py``); the allocation policy,
    and so the speed of everything else, is unchanged.
    """
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) >= 0)


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise TypeError(f"{what} must be an (H, W, 3) uint8 RGB array, got {got}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image


def resize_batch(images: Sequence[np.ndarray], size: int, resample: int, mean: Sequence[float],
                 std: Sequence[float]) -> torch.Tensor:
    """PIL-resize each (h, w, 3) uint8 crop to ``size`` x ``size`` and normalise: (B, 3, size, size)."""
    arrays = []
    for img in images:
        check_image(img, "tile")
        pil = Image.fromarray(np.ascontiguousarray(img))
        if pil.size != (size, size):
            pil = pil.resize((size, size), resample=resample)
        arrays.append(np.asarray(pil, np.float32) / 255.0)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def autocast(device: str, precision: str = "fp32"):
    """``torch.autocast`` for ``bf16``/``fp16`` (a no-op context for ``fp32``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def batches(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


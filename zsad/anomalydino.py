"""AnomalyDINO (Damm et al., WACV 2025): few-shot anomaly detection by nearest-neighbour search
over DINOv2 patch tokens, as its official code (github.com/dammsi/AnomalyDINO, ``src/detection.py``,
``src/backbones.py``, ``src/utils.py``, ``src/post_eval.py``) scores. Pure numpy/scipy/torch.

- ``patch_distances``: each test patch's mean cosine distance ``1 - cos`` to its ``k`` nearest
  reference patches. The official code L2-normalises both sides (``faiss.normalize_L2``), asks
  faiss' flat L2 index for the ``k`` smallest squared distances ``|x|^2 + |y|^2 - 2 x.y``
  (float32, negatives clamped to 0), averages them over ``k`` and halves them: ``1 - cos`` for
  unit vectors. zsad computes the same expression through ``zsad.nearest`` (metric ``l2sq``).
- ``foreground_mask``: the first principal component of the test image's tokens above
  ``threshold``; where that keeps at most 35 % of the central crop (``border`` cut from each
  side) the sign is flipped; then a ``kernel_size`` square dilation and closing (OpenCV's
  border rules: dilation pads with background, erosion with foreground). Masked patches keep
  distance 0 and still count in the image score.
- ``image_score``: the mean of the top 1 % of the image's patch distances (all patches, masked
  ones at 0), the maximum where ``int(0.01 P)`` is 0.
- ``anomaly_map``: the (h, w) distance grid resized bilinearly with half-pixel centres to the
  image's own size (``cv2.resize``, ``INTER_LINEAR``), then a Gaussian of ``sigma`` 4 with
  reflecting borders (``scipy.ndimage.gaussian_filter``).

Differences from the official code (listed in the README): PCA's randomized solver runs with a
fixed seed (the official one draws a new one each call; the first component agrees to float
rounding), the distances come from zsad's kernel rather than faiss (equal to float32 rounding),
and the resize is numpy's (OpenCV's taps and float32 weights; its vectorised kernels round
differently by < 2e-6 of the range). Example (one reference patch; the test patch at 90 degrees has distance 1):
    >>> ref = np.array([[1.0, 0.0]]); test = np.array([[0.0, 2.0], [3.0, 0.0]])
    >>> patch_distances(test, ref).tolist()
    [1.0, 0.0]
    >>> image_score(np.array([0.2, 0.9, 0.4])), image_score(np.arange(300.0))  # max; mean of 299, 298, 297
    (0.9, 298.0)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from .nearest import nearest

PCA_SEED = 0  # the official code leaves the randomized PCA unseeded


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float32 (``faiss.normalize_L2``; zero rows stay zero)."""
    x = np.ascontiguousarray(x, np.float32)
    norms = np.sqrt((x * x).sum(axis=1, dtype=np.float32))
    return x / np.where(norms > 0, norms, np.float32(1))[:, None]


def patch_distances(test_patches_pc: np.ndarray, reference_patches_mc: np.ndarray, *, k: int = 1) -> np.ndarray:
    """(P,) float64: each test patch's mean cosine distance to its ``k`` nearest reference patches.

    Args:
        test_patches_pc: (P, C) the test image's (kept) patch tokens.
        reference_patches_mc: (M, C) the memory bank: every reference image's kept patch tokens.
        k: neighbours averaged (AnomalyDINO: 1).
    """
    test, ref = np.asarray(test_patches_pc), np.asarray(reference_patches_mc)
    if test.ndim != 2 or ref.ndim != 2 or test.shape[1] != ref.shape[1]:
        raise ValueError(f"need (P, C) test and (M, C) reference patches of one width, got {test.shape} and "
                         f"{ref.shape}")
    if not 1 <= k <= len(ref):
        raise ValueError(f"k must be in 1..{len(ref)} (the reference patches), got {k}")
    if len(test) == 0:
        return np.zeros(0)
    d2 = nearest(torch.from_numpy(_unit(test)), torch.from_numpy(_unit(ref)), bounds=(0, len(ref)), metric="l2sq",
                 k=k)[:, 0]
    return (d2 / 2).double().numpy()


def image_score(distances_p: np.ndarray, *, top_fraction: float = 0.01) -> float:
    """The image's score: the mean of its ``int(top_fraction P)`` largest patch distances, or the
    largest where that count is 0 (``mean_top1p``)."""
    d = np.asarray(distances_p, np.float64).ravel()
    if d.size == 0:
        raise ValueError("an image score needs at least one patch distance")
    n = int(len(d) * top_fraction)
    return float(d.max()) if n == 0 else float(np.mean(np.sort(d)[::-1][:n]))


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's ``INTER_LINEAR`` taps along one axis: source index, next index and the float32
    weight of the next (half-pixel centres; beyond the border the edge value)."""
    scale = n_in / n_out
    f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    w = (f - i).astype(np.float32)
    low, high = i < 0, i >= n_in - 1
    w[low | high] = 0
    i = np.clip(i, 0, n_in - 1)
    return i, np.minimum(i + 1, n_in - 1), w


def resize_linear(grid_hw: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(grid, (W, H), interpolation=cv2.INTER_LINEAR)`` of a float64 grid: along x,
    then y, each weight pair ``(1 - w, w)`` in float32 (as OpenCV keeps them), applied in float64.
    Bit-identical to OpenCV for one row or column; for a grid, OpenCV's vectorised kernels round
    differently, by less than 2e-6 of the values' range (``tests/test_anomalydino.py``)."""
    g = np.asarray(grid_hw, np.float64)
    (y0, y1, wy), (x0, x1, wx) = _linear_taps(g.shape[0], size_hw[0]), _linear_taps(g.shape[1], size_hw[1])
    ax0, ax1 = (np.float32(1) - wx).astype(np.float64), wx.astype(np.float64)
    ay0, ay1 = (np.float32(1) - wy).astype(np.float64), wy.astype(np.float64)
    rows = g[:, x0] * ax0 + g[:, x1] * ax1
    return rows[y0] * ay0[:, None] + rows[y1] * ay1[:, None]


def anomaly_map(distances_hw: np.ndarray, *, size: int | tuple[int, int], sigma: float = 4.0) -> np.ndarray:
    """(H, W) float64: the distance grid at the image's size (``size``: H = W, or (H, W)),
    bilinear then Gaussian-smoothed (``dists2map``)."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
    return ndimage.gaussian_filter(resize_linear(distances_hw, (h, w)), sigma=sigma)


def first_component(tokens_pc: np.ndarray) -> np.ndarray:
    """(P,) each token's coordinate on the tokens' first principal component (float32 PCA, the
    randomized solver, signs as scikit-learn fixes them)."""
    from sklearn.decomposition import PCA
    pca = PCA(n_components=1, svd_solver="randomized", random_state=PCA_SEED)
    return pca.fit_transform(np.asarray(tokens_pc, np.float32))[:, 0]


def foreground_mask(tokens_pc: np.ndarray, grid_hw: Sequence[int], *, threshold: float = 10.0, kernel_size: int = 3,
                    border: float = 0.2) -> np.ndarray:
    """(P,) bool: the patches AnomalyDINO keeps as the object (``compute_background_mask``)."""
    gh, gw = (int(v) for v in grid_hw)
    pc = first_component(tokens_pc)
    if pc.size != gh * gw:
        raise ValueError(f"{pc.size} tokens do not fill a {gh} x {gw} grid")
    mask = (pc > threshold).reshape(gh, gw)
    centre = mask[int(gh * border):int(gh * (1 - border)), int(gw * border):int(gw * (1 - border))]
    if centre.sum() <= centre.size * 0.35:  # the object is assumed central: the other side of the component
        mask = (-pc > threshold).reshape(gh, gw)
    square = np.ones((kernel_size, kernel_size), bool)
    mask = ndimage.binary_dilation(mask, square, border_value=0)  # cv2.dilate
    closed = ndimage.binary_erosion(ndimage.binary_dilation(mask, square, border_value=0), square, border_value=1)
    return closed.ravel()  # cv2.morphologyEx(MORPH_CLOSE): dilation, then erosion that keeps the borders

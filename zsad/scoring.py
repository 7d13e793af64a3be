"""Tile-level anomaly scores from CLIP embeddings (seed, "Tile-level predictor").

Reproducible bit for bit: no BLAS call and no reduction whose order depends on the CPU, the
thread count or the memory layout. Every sum is ``math.fsum`` (correctly rounded, so its result
does not depend on the order of its terms), every product and quotient a single IEEE-754
operation, and the one transcendental is libm's ``exp`` (``math.exp``). So equal embeddings give
equal scores in any process of one machine, whatever its OpenBLAS kernel, BLAS threads, numpy
SIMD level or array alignment; across machines they may differ where two libm builds round
``exp`` differently (at most 1 ulp of ``exp``: < 1e-15 relative in a score; stated as 1e-12,
which one machine cannot test; the portability check tests other kernels on this one).
"""

from __future__ import annotations

import math

import numpy as np

# exp(z) overflows a float64 for z > 709.78; the sigmoid is then 0.0 to the last bit.
_EXP_LIMIT = 709.0


def unit_rows(x_nd: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm, ``sqrt(fsum(x * x))``: (N, D) -> (N, D) float64.
    Zero rows stay zero.

    Example:
        >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[0.6, 0.8], [0.0, 0.0]]
    """
    x = np.ascontiguousarray(x_nd, np.float64)
    if x.ndim != 2:
        raise ValueError(f"unit_rows takes an (N, D) array, got shape {x.shape}")
    norms = np.array([math.sqrt(math.fsum(row)) for row in (x * x).tolist()], np.float64).reshape(-1, 1)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def prompt_contrast(text_unit_pd: np.ndarray, anomalous_p: np.ndarray) -> np.ndarray:
    """The mean anomalous unit prompt minus the mean normal one, per dimension (fsum): (D,) float64.

    A tile's mean cosine similarity to a class's prompts is its dot product with that class's
    mean prompt, so ``tile . contrast`` is the seed's "mean anomalous similarity minus mean
    normal similarity" with one dot product per tile.

    Example:
        >>> prompt_contrast(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), np.array([False, False, True])).tolist()
        [0.09999999999999998, 0.30000000000000004]
    """
    anomalous_p = check_prompt_labels(text_unit_pd, anomalous_p)
    text = np.ascontiguousarray(text_unit_pd, np.float64)

    def mean_prompt(rows: np.ndarray) -> np.ndarray:
        return np.array([math.fsum(col) / len(rows) for col in rows.T.tolist()], np.float64)

    return mean_prompt(text[anomalous_p]) - mean_prompt(text[~anomalous_p])


def contrast_scores(image_unit_td: np.ndarray, contrast_d: np.ndarray, logit_scale: float) -> np.ndarray:
    """``sigmoid(logit_scale * (tile . contrast))`` per tile: (T, D), (D,) -> (T,) float64 in [0, 1].

    The softmax of the two mean similarities with CLIP's logit scale,
    ``exp(s*a) / (exp(s*n) + exp(s*a))``, is exactly this sigmoid of their difference.
    """
    tiles = np.ascontiguousarray(image_unit_td, np.float64)
    contrast = np.ascontiguousarray(contrast_d, np.float64)
    if tiles.ndim != 2 or contrast.shape != tiles.shape[1:]:
        raise ValueError(f"tile embeddings (T, D) and a (D,) contrast, got {tiles.shape} and {contrast.shape}")
    scale = float(logit_scale)
    out = []
    for row in (tiles * contrast).tolist():
        z = -scale * math.fsum(row)
        out.append(0.0 if z > _EXP_LIMIT else 1.0 / (1.0 + math.exp(z)))
    return np.array(out, np.float64)


def tile_scores(image_emb_td: np.ndarray, text_emb_pd: np.ndarray, anomalous_p: np.ndarray,
                logit_scale: float) -> np.ndarray:
    """Anomalous probability of each tile.

    The cosine similarity of each tile with every prompt is averaged per class (normal,
    anomalous) — the similarities, not the embeddings — and the two means go through a softmax
    with CLIP's logit scale: ``p = exp(s*a) / (exp(s*n) + exp(s*a)) = sigmoid(s * (a - n))``.
    Computed as ``contrast_scores(unit_rows(tiles), prompt_contrast(unit_rows(prompts)))``.

    Args:
        image_emb_td: (T, D) tile embeddings (normalised here).
        text_emb_pd: (P, D) prompt embeddings (normalised here).
        anomalous_p: (P,) bool, True for anomalous prompts; both classes must be present.
        logit_scale: CLIP's ``logit_scale.exp()`` (100 for the released models).

    Returns:
        (T,) float64 in [0, 1].

    Example:
        >>> img = np.array([[1.0, 0.0]])
        >>> txt = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # cos 1, 0 (normal); 0.6 (anomalous)
        >>> p = tile_scores(img, txt, np.array([False, False, True]), 10.0)
        >>> bool(np.isclose(p[0], 1 / (1 + np.exp(-10 * (0.6 - 0.5)))))
        True
    """
    contrast = prompt_contrast(unit_rows(text_emb_pd), anomalous_p)
    return contrast_scores(unit_rows(image_emb_td), contrast, logit_scale)


def check_prompt_labels(text_pd: np.ndarray, anomalous_p: np.ndarray) -> np.ndarray:
    """``anomalous_p`` as a (P,) bool array, checked: one label per prompt, both classes present."""
    anomalous_p = np.asarray(anomalous_p, bool)
    if np.shape(text_pd)[0] != anomalous_p.shape[0]:
        raise ValueError(f"{np.shape(text_pd)[0]} prompt embeddings but {anomalous_p.shape[0]} prompt labels")
    if anomalous_p.all() or not anomalous_p.any():
        raise ValueError(f"tile_scores needs both normal and anomalous prompts; got {int(anomalous_p.sum())} "
                         f"anomalous of {anomalous_p.size}")
    return anomalous_p

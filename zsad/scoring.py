"""Tile-level anomaly scores from CLIP embeddings (seed, "Tile-level predictor")."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unit-norm rows (float64). Zero rows stay zero."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def tile_scores(image_emb_td: np.ndarray, text_emb_pd: np.ndarray, anomalous_p: np.ndarray,
                logit_scale: float) -> np.ndarray:
    """Anomalous probability of each tile.

    The cosine similarity of each tile with every prompt is averaged per class (normal,
    anomalous) — the similarities, not the embeddings — and the two means go through a softmax
    with CLIP's logit scale: ``p = exp(s*a) / (exp(s*n) + exp(s*a)) = sigmoid(s * (a - n))``.

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
    anomalous_p = np.asarray(anomalous_p, bool)
    if text_emb_pd.shape[0] != anomalous_p.shape[0]:
        raise ValueError(f"{text_emb_pd.shape[0]} prompt embeddings but {anomalous_p.shape[0]} prompt labels")
    if anomalous_p.all() or not anomalous_p.any():
        raise ValueError("tile_scores needs both normal and anomalous prompts")
    return unit_tile_scores(l2_normalize(image_emb_td), l2_normalize(text_emb_pd), anomalous_p, logit_scale)


def unit_tile_scores(image_unit_td: np.ndarray, text_unit_pd: np.ndarray, anomalous_p: np.ndarray,
                     logit_scale: float) -> np.ndarray:
    """``tile_scores`` of embeddings already normalised by ``l2_normalize`` (bit for bit the same;
    a class's prompts are normalised once for all its images)."""
    anomalous_p = np.asarray(anomalous_p, bool)
    sims = image_unit_td @ text_unit_pd.T
    normal = sims[:, ~anomalous_p].mean(axis=1)
    anomalous = sims[:, anomalous_p].mean(axis=1)
    return 1.0 / (1.0 + np.exp(-float(logit_scale) * (anomalous - normal)))

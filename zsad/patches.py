"""Patch-level scoring beyond zero-shot: few-shot (WinCLIP+) and batch-mutual (MuSc) distances.

Features are CLIP patch tokens of each tile, ``(T, L, gy, gx, C)`` (tile, layer, grid y, grid x,
channel), as the ``clip_patch`` stage stores them. Every score here is a cosine distance mapped
to [0, 1]: ``d(a, b) = (1 - cos(a, b)) / 2`` (WinCLIP+'s ``0.5 * (1 - <f, r>)``). Before the
distances, features may be averaged over an r x r neighbourhood of the grid (MuSc's local
aggregation, r = 1, 3, 5, ...); scores are averaged over layers and neighbourhood sizes.
Pure numpy/torch: no store, no Prefect.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .nearest import nearest


def neighbourhood_sizes(largest: int) -> tuple[int, ...]:
    """Odd neighbourhood sizes up to ``largest``: MuSc's r = 1, 3, 5.

    Example:
        >>> neighbourhood_sizes(5), neighbourhood_sizes(1)
        ((1, 3, 5), (1,))
    """
    if not isinstance(largest, int) or largest < 1 or largest % 2 == 0:
        raise ValueError(f"neighbourhood must be an odd whole number >= 1 (1 = single patches), got {largest!r}")
    return tuple(range(1, largest + 1, 2))


def pooled_features(patches_tlyxc: np.ndarray, r: int) -> torch.Tensor:
    """Unit-norm features averaged over each patch's r x r neighbourhood (borders: mean over the
    patches that exist). (T, L, gy, gx, C) -> (L, T * gy * gx, C) float32 tensor."""
    x = torch.as_tensor(np.asarray(patches_tlyxc), dtype=torch.float32)
    if x.ndim != 5:
        raise ValueError(f"patch features must be (tile, layer, y, x, channel), got shape {tuple(x.shape)}")
    t, lay, gy, gx, c = x.shape
    x = x.permute(0, 1, 4, 2, 3).reshape(t * lay, c, gy, gx)
    if r > 1:
        x = F.avg_pool2d(x, r, 1, r // 2, count_include_pad=False)
    x = x.reshape(t, lay, c, gy * gx).permute(1, 0, 3, 2).reshape(lay, t * gy * gx, c)
    return F.normalize(x, dim=-1)


def few_shot_scores(query_tlyxc: np.ndarray, memory_tlyxc: np.ndarray, neighbourhood: int = 1) -> np.ndarray:
    """WinCLIP+ reference association: each query patch's distance to its nearest reference patch.

    Args:
        query_tlyxc: (T, L, gy, gx, C) patch features of one image's tiles.
        memory_tlyxc: (M, L, gy, gx, C) patch features of the reference images' tiles.
        neighbourhood: largest neighbourhood size (``neighbourhood_sizes``).

    Returns:
        (T, gy, gx) float32 in [0, 1]: ``(1 - max cos) / 2`` averaged over layers and sizes.

    Example:
        >>> q = np.array([1.0, 0, 0, 0]).reshape(1, 1, 1, 1, 4)           # one patch
        >>> mem = np.array([[0.0, 1, 0, 0], [1.0, 1, 0, 0]]).reshape(2, 1, 1, 1, 4)
        >>> round(float(few_shot_scores(q, mem)[0, 0, 0]), 4)              # cos 0.7071 is nearest
        0.1464
    """
    q, m = np.asarray(query_tlyxc), np.asarray(memory_tlyxc)
    if m.shape[0] == 0:
        raise ValueError("the reference memory holds no patches: give at least one reference image with a tile")
    if q.shape[1:] != m.shape[1:]:
        raise ValueError(f"query patches {q.shape[1:]} and reference patches {m.shape[1:]} differ in "
                         "(layer, y, x, channel): they come from different CLIP models or layers")
    t, _, gy, gx, _ = q.shape
    out = torch.zeros(t * gy * gx)
    sizes = neighbourhood_sizes(neighbourhood)
    for r in sizes:
        qf, mf = pooled_features(q, r), pooled_features(m, r)
        d = torch.stack([nearest(qf[lay], mf[lay], bounds=(0, mf.shape[1]), metric="cosine")[:, 0]
                         for lay in range(qf.shape[0])])
        out += d.mean(dim=0)
    return (out / len(sizes)).reshape(t, gy, gx).numpy().astype(np.float32)


def lowest_mean(distances_np: np.ndarray, fraction: float) -> np.ndarray:
    """MuSc's interval average: per patch, the mean of the smallest ``ceil(fraction * N)`` of its
    N distances (N other images), so a few other anomalous images cannot hide a defect.

    Args:
        distances_np: (N, P) distance of each of P patches to its nearest patch in each of N images.
        fraction: in (0, 1].

    Example:
        >>> lowest_mean(np.array([[0.4, 0.1], [0.2, 0.3], [0.9, 0.2]]), 0.5).round(3).tolist()
        [0.3, 0.15]
    """
    d = np.asarray(distances_np, np.float64)
    if d.ndim != 2 or d.shape[0] < 1:
        raise ValueError(f"need an (N, P) array with N >= 1 other images, got shape {d.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"mutual fraction must be in (0, 1], got {fraction!r}")
    k = max(1, math.ceil(fraction * d.shape[0] - 1e-9))
    return np.sort(d, axis=0)[:k].mean(axis=0)


def image_distances(query_lpc: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N, L, P): for each other image (its (L, K_j, C) features), each query patch's distance to
    its nearest patch there, per layer. The images are batched into one matrix product per layer
    (a (P, sum K_j) similarity matrix at a time: ~50 MB for 16 images of 2 tiles)."""
    keys = torch.cat(list(others), dim=1)
    bounds = np.cumsum([0] + [o.shape[1] for o in others]).tolist()
    return torch.stack([nearest(query_lpc[layer], keys[layer], bounds=bounds, metric="cosine").T
                        for layer in range(query_lpc.shape[0])], dim=1)


def mutual_scores(queries: dict[str, np.ndarray], others: Iterable[Sequence[tuple[str, np.ndarray]]],
                  fraction: float = 0.3, neighbourhood: int = 1) -> dict[str, np.ndarray]:
    """MuSc mutual scoring: each query image against the other unlabelled images of its class.

    Args:
        queries: image id -> (T, L, gy, gx, C) patch features of the images scored.
        others: blocks of ``(image id, (T_j, L, gy, gx, C) features)``: every image of the class
            (queries included: an image is never compared with itself). Blocks bound memory:
            only one block's features are held at a time, and each is used for all queries.
        fraction: share of the other images whose distances are averaged (``lowest_mean``).
        neighbourhood: largest neighbourhood size.

    Returns:
        image id -> (T, gy, gx) float32 in [0, 1], averaged over layers and neighbourhood sizes.

    Example:
        >>> a = np.array([1.0, 0]).reshape(1, 1, 1, 1, 2); b = np.array([0.0, 1]).reshape(1, 1, 1, 1, 2)
        >>> out = mutual_scores({"a": a}, [[("a", a), ("b", b), ("c", a)]], fraction=0.5)
        >>> float(out["a"][0, 0, 0])   # distances to b (0.5) and c (0): the lower half is 0
        0.0
    """
    sizes = neighbourhood_sizes(neighbourhood)
    pooled = {(qid, r): pooled_features(np.asarray(q), r) for qid, q in queries.items() for r in sizes}
    dists: dict[tuple[str, int], list[torch.Tensor]] = {key: [] for key in pooled}
    for block in others:
        block = [(kid, np.asarray(k)) for kid, k in block]
        for r in sizes:
            keys = {kid: pooled_features(k, r) for kid, k in block}
            for qid in queries:
                rest = [f for kid, f in keys.items() if kid != qid and f.shape[1] > 0]
                if rest:
                    dists[(qid, r)].append(image_distances(pooled[(qid, r)], rest))
    out = {}
    for qid, q in queries.items():
        t, _, gy, gx, _ = np.shape(q)
        if not dists[(qid, sizes[0])]:
            raise ValueError(f"mutual scoring of {qid} needs at least one other image of its class")
        total = np.zeros(t * gy * gx)
        for r in sizes:
            d = torch.cat(dists[(qid, r)]).numpy()  # (N, L, P)
            total += np.mean([lowest_mean(d[:, layer], fraction) for layer in range(d.shape[1])], axis=0)
        out[qid] = (total / len(sizes)).reshape(t, gy, gx).astype(np.float32)
    return out


def combine_maps(zero_shot_hw: np.ndarray, patch_hw: np.ndarray, zero_shot_score: float, rule: str
                 ) -> tuple[np.ndarray, float]:
    """The combined map and sample score of a few-shot or mutual variant.

    ``mean`` (WinCLIP+): map = average of the zero-shot and patch maps; score = average of the
    zero-shot sample score and the patch map's maximum. ``patch``: the patch evidence alone
    (MuSc without its re-scoring): map = patch map; score = its maximum.

    Example:
        >>> m, s = combine_maps(np.array([[0.2, 0.4]]), np.array([[0.6, 0.0]]), 0.5, "mean")
        >>> m.astype(float).round(3).tolist(), round(s, 3)
        ([[0.4, 0.2]], 0.55)
    """
    patch_hw = np.asarray(patch_hw, np.float32)
    peak = float(patch_hw.max()) if patch_hw.size else 0.0
    zero_shot_score = float(zero_shot_score)
    if rule == "patch":
        return patch_hw, peak
    if rule == "mean":
        return (np.asarray(zero_shot_hw, np.float32) + patch_hw) / 2, (zero_shot_score + peak) / 2
    raise ValueError(f"combine rule must be 'mean' (WinCLIP+) or 'patch', got {rule!r}")

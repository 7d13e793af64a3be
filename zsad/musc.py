"""MuSc (Li et al., ICLR 2024): zero-shot mutual scoring of a batch of unlabelled images, as its
official code (github.com/xrli-U/MuSc, ``models/modules/_LNAMD.py``, ``_MSM.py``, ``_RsCIN.py``,
``models/musc.py``) computes it.

Input: whole-image ViT tokens ``tokens_nlpc``: N images, L layers, 1 + g*g tokens (the class
token first, then the g x g patches row by row), C channels. Per neighbourhood size r:

- **LNAMD**: per image and layer, the class token dropped; LayerNorm over (C, g, g) with unit
  weight, zero bias, eps 1e-5; each patch averaged with its r x r neighbours (zero padding,
  stride 1: a border patch's mean counts the zeros, it is divided by r*r); L2-normalised.
- **MSM**: per patch p of image i and per other image j, ``d_j(p) = min_q ||z_ip - z_jq||``;
  the patch's score is the mean of the smallest ``k = int(fraction * (N - 1))`` of the N - 1
  values (MuSc's expression; where it is 0, zsad uses 1: ``interval_count``).

The map is the mean over r (in ``r_list``'s order) of the mean over layers, at the token grid;
the image score is the maximum of that map upsampled bilinearly (``align_corners=True``) to the
input size (``image_scores``); **RsCIN** (``rescore``) re-scores the images of a class with
their class tokens. Distances run in float32 and the averages in float64, as MuSc's do.

``same_position`` (not MuSc; its issue #52, aligned parts): patch p is compared only with the
patches within ``d`` grid steps of its own position in the other images (``d = 0``: the same
position).

Example (one layer, 2 x 2 grids of 2 channels; image b differs from a and c in its last patch,
which also shifts b's LayerNorm statistics, hence its other patches' 0.632):
    >>> a = np.zeros((1, 5, 2)); a[0, 1:] = [[1, 0], [0, 1], [1, 0], [0, 1]]   # CLS, 4 patches
    >>> b = a.copy(); b[0, 4] = [-1, -1]
    >>> mutual_maps(np.stack([a, b, a]), r_list=(1,), fraction=0.5).round(3)[1].tolist()
    [[0.632, 0.632], [0.632, 1.414]]
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .musc_pairs import GEMM_ELEMENTS, grid_of, nearest_distances, pair_block, pair_distances, position_mask  # noqa: F401

LAYERNORM_EPS = 1e-5


def interval_count(n_others: int, fraction: float) -> int:
    """How many of the ``n_others`` nearest-patch distances a patch's score averages: MuSc's
    ``int(n_others * fraction)``, or 1 where that is 0 (MuSc then averages nothing: NaN; its
    issue #41), with a warning.

    Example:
        >>> interval_count(199, 0.3), interval_count(10, 0.3), interval_count(10, 1.0)
        (59, 3, 10)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"MuSc's fraction of the other images must be in (0, 1], got {fraction!r}")
    k = int(n_others * fraction)
    if k == 0:
        warnings.warn(f"MuSc: int({fraction} x {n_others} other images) is 0, so MuSc's own code would average "
                      "no distance (NaN); zsad averages the smallest one instead (a class needs "
                      f"{math.ceil(1 / fraction) + 1} images for MuSc's rule)", stacklevel=2)
    return max(k, 1)


def lnamd(tokens_nlpc: np.ndarray | torch.Tensor, r: int, *, device: str = "cpu") -> torch.Tensor:
    """LNAMD features: (N, L, 1 + g*g, C) tokens -> (N, L, g*g, C) float32, unit norm over C.

    Example (one patch: r = 1 is LayerNorm, then unit norm):
        >>> t = torch.tensor([[[[9.0, 9.0], [1.0, 3.0]]]])        # CLS, then one 2-channel patch
        >>> lnamd(t, 1).double().numpy().round(4).tolist()
        [[[[-0.7071, 0.7071]]]]
    """
    if not isinstance(r, int) or r < 1 or r % 2 == 0:
        raise ValueError(f"MuSc's neighbourhood size r must be an odd whole number >= 1, got {r!r}")
    x = torch.as_tensor(tokens_nlpc).to(device=device, dtype=torch.float32)
    if x.ndim != 4:
        raise ValueError(f"tokens must be (images, layers, 1 + g*g tokens, channels), got shape {tuple(x.shape)}")
    n, lay, t, c = x.shape
    g = grid_of(t)
    x = x[:, :, 1:, :].reshape(n * lay, g, g, c).permute(0, 3, 1, 2)
    x = F.layer_norm(x, (c, g, g), eps=LAYERNORM_EPS)
    if r > 1:
        x = F.avg_pool2d(x, r, stride=1, padding=r // 2, count_include_pad=True)
    x = x.permute(0, 2, 3, 1).reshape(n, lay, g * g, c)
    return x / x.norm(dim=-1, keepdim=True)


def layer_features(tokens_nlpc: np.ndarray | torch.Tensor, layer: int, r: int, *, device: str = "cpu",
                   chunk: int = 16) -> torch.Tensor:
    """(N, g*g, C) LNAMD features of one layer of a batch, ``chunk`` images at a time (LNAMD is
    per image: the same values as one call, with the float32 intermediates of ``chunk`` images
    instead of N)."""
    tokens = torch.as_tensor(tokens_nlpc)
    out = None
    for s in range(0, tokens.shape[0], chunk):
        z = lnamd(tokens[s: s + chunk, layer: layer + 1], r, device=device)[:, 0]
        if out is None:
            out = torch.empty((tokens.shape[0], *z.shape[1:]), dtype=z.dtype, device=z.device)
        out[s: s + len(z)] = z
    return out


def interval_mean(nearest_np: torch.Tensor, k: int) -> torch.Tensor:
    """(P,) float32: per patch, the mean of its ``k`` smallest distances of ``nearest_np``
    ((N others, P)), by MuSc's operations (two top-k selections, then the mean)."""
    d = nearest_np.T.float()
    vals = torch.topk(d, k, largest=False, sorted=True).values
    vals = torch.topk(vals, k, largest=True, sorted=True).values
    return vals.mean(dim=1)


def scores_from_nearest(nearest_rlnp: Sequence[torch.Tensor | np.ndarray], fraction: float) -> np.ndarray:
    """(P,) float64 patch scores of one image from its nearest-patch distances: one (L, N others, P)
    array per neighbourhood size r (in MuSc's order); per layer the interval mean of the smallest
    ``interval_count(N others, fraction)``, then the mean over layers, then over r."""
    per_r = []
    for rows in nearest_rlnp:
        rows = torch.as_tensor(rows)
        k = interval_count(rows.shape[1], fraction)
        per_r.append(torch.stack([interval_mean(rows[lay], k).double() for lay in range(rows.shape[0])]).mean(0))
    return torch.stack(per_r).mean(0).cpu().numpy()


def _check_batch(tokens_nlpc: np.ndarray | torch.Tensor) -> None:
    shape = tuple(tokens_nlpc.shape)
    if len(shape) != 4:
        raise ValueError(f"tokens must be (images, layers, 1 + g*g tokens, channels), got shape {shape}")
    if shape[0] < 2:
        raise ValueError(f"MuSc scores each image against the other images of its class: a class of {shape[0]} "
                         "image(s) cannot be scored (give at least 2; MuSc's 30 % rule wants 5 or more)")


def mutual_maps(tokens_nlpc: np.ndarray | torch.Tensor, *, r_list: Sequence[int] = (1, 3, 5), fraction: float = 0.3,
                layers: Sequence[int] | None = None, same_position: int | None = None, device: str = "cpu"
                ) -> np.ndarray:
    """MuSc's anomaly maps of a batch: (N, L, 1 + g*g, C) tokens -> (N, g, g) float64.

    Args:
        tokens_nlpc: the batch's whole-image tokens (any float dtype; float16 as cached).
        r_list: LNAMD neighbourhood sizes (MuSc: 1, 3, 5), averaged in this order.
        fraction: share of the N - 1 other images averaged per patch (``interval_count``).
        layers: indices into the L cached layers to use (None: all, as MuSc).
        same_position: None (MuSc), or compare each patch only with the others' patches within
            that many grid steps of its position.
        device: where LNAMD and the distances run (``cuda``: same numbers up to float rounding).
    """
    _check_batch(tokens_nlpc)
    tokens = torch.as_tensor(tokens_nlpc)
    if layers is not None:
        tokens = tokens[:, list(layers)]
    n, g = tokens.shape[0], grid_of(tokens.shape[2])
    rows = [[] for _ in range(n)]  # per image: per r, (L, N - 1, P)
    for r in r_list:
        per_layer = []
        for lay in range(tokens.shape[1]):
            z = layer_features(tokens, lay, r, device=device)
            per_layer.append(pair_distances(z, same_position=same_position).cpu())
        table = torch.stack(per_layer)  # (L, N, N, P)
        for i in range(n):
            rows[i].append(torch.cat([table[:, i, :i], table[:, i, i + 1:]], dim=1))
    return np.stack([scores_from_nearest(rows[i], fraction) for i in range(n)]).reshape(n, g, g)


def score_against_batch(queries_nlpc: np.ndarray | torch.Tensor, batch_nlpc: np.ndarray | torch.Tensor, *,
                        r_list: Sequence[int] = (1, 3, 5), fraction: float = 0.3,
                        layers: Sequence[int] | None = None, same_position: int | None = None,
                        device: str = "cpu") -> np.ndarray:
    """New images against a cached batch of N images of their class: (Q, g, g) float64, each new
    image's map as ``mutual_maps`` would give it within the batch plus itself (its N others;
    k = int(fraction N)). The new images are not compared with each other, and the batch's own
    maps are not recomputed (with a new image they would change by its one extra distance each).
    The batch's LNAMD features are computed once for all the new images."""
    queries, batch = torch.as_tensor(queries_nlpc), torch.as_tensor(batch_nlpc)
    if batch.ndim != 4 or batch.shape[0] < 1 or queries.ndim != 4:
        raise ValueError(f"new images and batch must be (images, layers, tokens, channels) with at least one batch "
                         f"image, got {tuple(queries.shape)} and {tuple(batch.shape)}")
    if layers is not None:
        queries, batch = queries[:, list(layers)], batch[:, list(layers)]
    g = grid_of(queries.shape[2])
    rows = [[] for _ in range(queries.shape[0])]  # per new image: per r, (L, N, P)
    for r in r_list:
        per_layer = torch.stack([
            nearest_distances(layer_features(queries, lay, r, device=device), layer_features(batch, lay, r, device=device),
                              same_position=same_position).cpu()
            for lay in range(queries.shape[1])], dim=1)  # (Q, L, N, P)
        for q in range(queries.shape[0]):
            rows[q].append(per_layer[q])
    return np.stack([scores_from_nearest(r_rows, fraction) for r_rows in rows]).reshape(-1, g, g)


def upsample(maps_ngg: np.ndarray, size: int) -> np.ndarray:
    """(N, g, g) -> (N, size, size) float64: bilinear, ``align_corners=True`` (MuSc's maps)."""
    m = torch.as_tensor(np.asarray(maps_ngg, np.float64))[:, None]
    return F.interpolate(m, size=(size, size), mode="bilinear", align_corners=True)[:, 0].numpy()


def image_scores(maps_ngg: np.ndarray, size: int, block: int = 16) -> np.ndarray:
    """(N,) float64: each map's maximum after ``upsample`` to ``size`` (MuSc's image score; below
    the grid maximum where the grid points fall between output pixels)."""
    maps_ngg = np.asarray(maps_ngg, np.float64)
    return np.concatenate([upsample(maps_ngg[s: s + block], size).reshape(len(maps_ngg[s: s + block]), -1).max(1)
                           for s in range(0, len(maps_ngg), block)]) if len(maps_ngg) else np.zeros(0)


def rescore(scores_n: np.ndarray, class_tokens_nd: np.ndarray, k_list: Sequence[int]) -> np.ndarray:
    """RsCIN: (N,) image scores re-scored over the class's images, float64 (MuSc computes in float32).

    Scores are min-max normalised; ``W = cls cls^T`` of the (N, D) class tokens; for each k of
    ``k_list`` each row keeps its k largest entries (all N where k > N), is divided by its sum and
    applied to the scores; the results are averaged over k. An empty ``k_list`` or one holding 0
    returns the scores unchanged (MuSc's "off").

    Example (two images alike, one apart; k = 2 averages each with its nearest other):
        >>> cls = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> rescore(np.array([0.0, 1.0, 0.5]), cls, [2]).round(3).tolist()
        [0.5, 0.5, 0.5]
    """
    s = np.asarray(scores_n, np.float64)
    cls = np.asarray(class_tokens_nd, np.float32)
    if cls.ndim != 2 or cls.shape[0] != s.shape[0]:
        raise ValueError(f"RsCIN needs one class token per image: {s.shape[0]} scores, class tokens {cls.shape}")
    if not len(k_list) or 0 in k_list:
        return s.copy()
    span = s.max() - s.min()
    norm = (s - s.min()) / span if span > 0 else np.zeros_like(s)  # MuSc: 0 / 0 (NaN) for equal scores
    w = torch.tensor(cls @ cls.T).float()
    n = w.shape[0]
    out = []
    for k in k_list:
        drop = torch.topk(w, n - min(int(k), n), largest=False, sorted=True).indices
        kept = w.clone().scatter_(1, drop, 0.0)
        p = kept * (1 / kept.sum(1, keepdim=True))
        out.append(p @ torch.tensor(norm).float()[:, None])
    return torch.cat(out, -1).mean(-1).double().numpy()

"""MuSc's nearest-patch distances between the images of a batch (the MSM step's expensive
part): ``nearest_distances`` for query images against key images, ``pair_distances`` for a
whole batch with each unordered pair of images formed once. Both search through
``zsad.nearest``; ``zsad.musc`` re-exports them."""

from __future__ import annotations

import math

import torch

from .nearest import nearest, nearest_both_ways

GEMM_ELEMENTS = 1 << 26  # the largest (query patches x key patches) block of distances held at once


def grid_of(n_tokens: int) -> int:
    """The side g of a square grid of ``n_tokens`` = 1 + g*g tokens (a ``ValueError`` otherwise)."""
    g = math.isqrt(max(n_tokens - 1, 0))
    if n_tokens < 2 or g * g != n_tokens - 1:
        raise ValueError(f"MuSc needs 1 + g*g tokens per layer (the class token, then a square grid of patches), "
                         f"got {n_tokens}")
    return g


def position_mask(g: int, d: int) -> torch.Tensor:
    """(g*g, g*g) bool: patch q lies within ``d`` grid steps (in y and in x) of patch p."""
    yy, xx = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    y, x = yy.reshape(-1), xx.reshape(-1)
    return ((y[:, None] - y[None, :]).abs() <= d) & ((x[:, None] - x[None, :]).abs() <= d)


def nearest_distances(query_npc: torch.Tensor, keys_npc: torch.Tensor, *, same_position: int | None = None
                      ) -> torch.Tensor:
    """(Nq, Nk, P) float32: for each query image's patch p and key image j, the Euclidean distance
    to j's nearest patch (``same_position``: among the patches within that many grid steps of p).

    The search is ``zsad.nearest.nearest`` with the ``l2`` metric (``torch.cdist``'s formula,
    the square root after the minimum), per block of query images so that a block of key
    images holds at most ``GEMM_ELEMENTS`` distances.
    """
    nq, p, c = query_npc.shape
    nk = keys_npc.shape[0]
    if keys_npc.shape[1:] != (p, c):
        raise ValueError(f"query patches {tuple(query_npc.shape[1:])} and key patches {tuple(keys_npc.shape[1:])} "
                         "differ in (patches, channels)")
    out = torch.empty(nq, nk, p, dtype=torch.float32, device=query_npc.device)
    if same_position == 0:  # the same position only: no nearest-patch search
        for i in range(nq):
            out[i] = (keys_npc - query_npc[i]).pow(2).sum(-1).sqrt()
        return out
    outside = None if same_position is None else ~position_mask(grid_of(p + 1), same_position).to(query_npc.device)
    keys = keys_npc.reshape(-1, c)
    bounds = range(0, nk * p + 1, p)
    kb = max(1, min(nk, GEMM_ELEMENTS // (p * p)))
    qb = max(1, GEMM_ELEMENTS // (p * p * kb))
    for s in range(0, nq, qb):
        q = query_npc[s: s + qb]
        d = nearest(q.reshape(-1, c), keys, bounds=bounds, metric="l2", outside_mn=outside,
                    max_elements=GEMM_ELEMENTS)  # (query image * P, Nk)
        out[s: s + qb] = d.view(q.shape[0], p, nk).permute(0, 2, 1)
    return out


def pair_block(n: int, p: int) -> int:
    """Images per side of ``pair_distances``' blocks: at most ``GEMM_ELEMENTS`` distances a block
    pair, and at most a tenth of the batch (a diagonal block forms its pairs both ways: with
    blocks of b images the products are (N^2 + N b) / 2, so b <= N / 10 keeps the saving >= 1.8x).

    Example:
        >>> pair_block(200, 1369), pair_block(200, 225), pair_block(8, 225)
        (5, 20, 1)
    """
    return max(1, min(math.isqrt(GEMM_ELEMENTS) // p, n // 10))


def pair_distances(z_npc: torch.Tensor, *, same_position: int | None = None) -> torch.Tensor:
    """(N, N, P) float32: ``nearest_distances(z, z)`` with each unordered pair of images formed
    once: blocks of images (I, J), I <= J, one matrix product each, its row minima the distances
    of I's patches to J and its column minima J's to I (``zsad.nearest.nearest_both_ways``). Off
    the diagonal the values equal ``nearest_distances``' to float32 rounding (one ulp measured);
    an image's distances to itself (~0; MuSc never uses them) differ more."""
    n, p, c = z_npc.shape
    if same_position == 0:
        return nearest_distances(z_npc, z_npc, same_position=0)
    outside = None if same_position is None else ~position_mask(grid_of(p + 1), same_position).to(z_npc.device)
    out = torch.empty(n, n, p, dtype=torch.float32, device=z_npc.device)
    block = pair_block(n, p)
    for s in range(0, n, block):
        a = z_npc[s: s + block]
        for t in range(s, n, block):
            b = z_npc[t: t + block]
            ab, ba = nearest_both_ways(a.reshape(-1, c), b.reshape(-1, c), a_bounds=range(0, len(a) * p + 1, p),
                                       b_bounds=range(0, len(b) * p + 1, p), outside_mn=outside)
            out[s: s + len(a), t: t + len(b)] = ab.view(len(a), p, len(b)).permute(0, 2, 1)
            out[t: t + len(b), s: s + len(a)] = ba.view(len(b), p, len(a)).permute(0, 2, 1)
    return out

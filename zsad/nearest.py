"""The one nearest-patch kernel: for each query patch, its distance to the nearest key patch of
each key segment (a reference memory, another image of the batch). Few-shot (WinCLIP+), the
tile-mutual mode and MuSc call it with their metric; what each then does with the distances (the
k rule, the averaging) stays theirs.

Metrics (``x`` a query, ``y`` a key):

- ``cosine``: ``(1 - max_y x.y) / 2`` for unit-norm features (WinCLIP+'s ``0.5 (1 - <f, r>)``);
- ``l2``: ``sqrt(max(0, min_y (|y|^2 - 2 x.y) + |x|^2))``, the Euclidean distance by
  ``torch.cdist``'s formula for large inputs (one ``addmm``), the square root after the minimum;
- ``l2sq``: ``max(0, |x|^2 + |y|^2 - 2 x.y)``, the squared distance as faiss' flat L2 index gives
  it (AnomalyDINO).

``k`` > 1 averages the ``k`` nearest keys of each segment instead of taking the nearest (the
``k`` smallest kept across blocks, then their mean; ``l2sq`` only).

Keys are processed in blocks of whole segments (a segment larger than a block is split, the
running best kept), so at most ``max_elements`` similarities are held at once. The minimum and
maximum are exact, but a matrix product of another shape may take another BLAS kernel: blocks
change a distance by at most float32 rounding, and the callers keep their block sizes fixed.

Example (one query, two segments: keys 0-1 and key 2):
    >>> import torch
    >>> q = torch.tensor([[1.0, 0.0]]); k = torch.tensor([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
    >>> nearest(q, k, bounds=(0, 2, 3), metric="cosine").tolist()   # cos 0.6 is segment 0's nearest
    [[0.19999998807907104, 0.0]]
    >>> nearest(q, k, bounds=(0, 2, 3), metric="l2").round(decimals=4).tolist()   # sqrt(0.8)
    [[0.8944000005722046, 0.0]]
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

METRICS = ("cosine", "l2", "l2sq")
MAX_ELEMENTS = 1 << 26  # similarities held at once (256 MB of float32)


def _blocks(bounds: Sequence[int], rows: int) -> list[tuple[int, int]]:
    """Key row ranges of at most ``rows`` rows, ending on a segment bound where one fits (a
    segment longer than ``rows`` is split)."""
    out, start = [], 0
    while start < bounds[-1]:
        fits = [b for b in bounds if start < b <= start + rows]
        end = fits[-1] if fits else start + rows
        out.append((start, end))
        start = end
    return out


def _reduce(block: torch.Tensor, seg: list[tuple[int, int]], metric: str) -> torch.Tensor:
    """(M, S_block): per segment (column ranges of ``block``), the best column per row."""
    sizes = {b - a for a, b in seg}
    if len(sizes) == 1 and len(seg) > 1:  # equal segments: one reduction over a view
        n = sizes.pop()
        view = block.view(block.shape[0], len(seg), n)
        return view.amax(-1) if metric == "cosine" else view.amin(-1)
    reduce = (lambda x: x.amax(1)) if metric == "cosine" else (lambda x: x.amin(1))
    return torch.stack([reduce(block[:, a:b]) for a, b in seg], dim=1)


def nearest(query_mc: torch.Tensor, keys_nc: torch.Tensor, *, bounds: Sequence[int], metric: str,
            outside_mn: torch.Tensor | None = None, max_elements: int = MAX_ELEMENTS, k: int = 1) -> torch.Tensor:
    """(M, S) float32: each of the M query rows' distance (``metric``) to its nearest key row in
    each segment ``bounds[s]:bounds[s + 1]`` of ``keys_nc`` (N, C).

    ``outside_mn``: (m, n) bool, query row i and key row j of a segment are never matched where
    ``outside_mn[i % m, j - bounds[s]]`` (MuSc's same-position rule; equal segments of n rows).
    """
    if metric not in METRICS:
        raise ValueError(f"nearest-patch metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if k != 1:
        return _k_nearest(query_mc, keys_nc, bounds, k, max_elements)
    bounds = [int(b) for b in bounds]
    if bounds[0] != 0 or bounds[-1] != keys_nc.shape[0] or any(b > a for a, b in zip(bounds[1:], bounds)):
        raise ValueError(f"segment bounds must rise from 0 to the {keys_nc.shape[0]} keys, got {bounds}")
    m = query_mc.shape[0]
    if metric == "l2sq":
        return _k_nearest(query_mc, keys_nc, bounds, 1, max_elements)
    best = torch.full((m, len(bounds) - 1), -math.inf if metric == "cosine" else math.inf,
                      dtype=torch.float32, device=query_mc.device)
    rows = max(1, max_elements // max(1, m))
    k2 = keys_nc.pow(2).sum(-1) if metric == "l2" else None
    for a, b in _blocks(bounds, rows):
        keys = keys_nc[a:b]
        part = query_mc @ keys.T if metric == "cosine" else torch.addmm(k2[a:b], query_mc, keys.T, beta=1, alpha=-2)
        seg = [(max(s, a) - a, min(e, b) - a, i) for i, (s, e) in enumerate(zip(bounds[:-1], bounds[1:]))
               if s < b and e > a and e > s]
        if outside_mn is not None:
            part = _mask(part, outside_mn, [(s, e) for s, e, _ in seg], metric)
        got = _reduce(part, [(s, e) for s, e, _ in seg], metric)
        idx = [i for _, _, i in seg]
        best[:, idx] = torch.maximum(best[:, idx], got) if metric == "cosine" else torch.minimum(best[:, idx], got)
    if metric == "cosine":
        return (1 - best) / 2
    return (best + query_mc.pow(2).sum(-1)[:, None]).clamp_min(0).sqrt()


def _k_nearest(query_mc: torch.Tensor, keys_nc: torch.Tensor, bounds: Sequence[int], k: int, max_elements: int
               ) -> torch.Tensor:
    """(M, S) float32: the mean of each query row's ``k`` smallest ``l2sq`` distances per segment."""
    bounds = [int(b) for b in bounds]
    if any(b - a < k for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"k = {k} nearest keys need segments of at least {k} keys, got bounds {bounds}")
    q2, k2 = query_mc.pow(2).sum(-1), keys_nc.pow(2).sum(-1)
    rows = max(1, max_elements // max(1, query_mc.shape[0]))
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        best = None
        for s in range(a, b, rows):
            e = min(b, s + rows)
            d2 = torch.addmm(k2[s:e], query_mc, keys_nc[s:e].T, beta=1, alpha=-2).add_(q2[:, None]).clamp_min_(0)
            part = torch.topk(d2, min(k, e - s), dim=1, largest=False, sorted=True).values
            best = part if best is None else torch.topk(torch.cat([best, part], 1), k, 1, largest=False).values
        out.append(best.mean(dim=1))
    return torch.stack(out, dim=1)


def _mask(part: torch.Tensor, outside_mn: torch.Tensor, seg: list[tuple[int, int]], metric: str) -> torch.Tensor:
    m, n = outside_mn.shape
    if any(e - s != n for s, e in seg) or part.shape[0] % m:
        raise ValueError(f"a position mask of {tuple(outside_mn.shape)} needs whole query groups of {m} rows and "
                         f"whole segments of {n} keys in each block: raise max_elements to at least "
                         f"{part.shape[0] * n} or pass fewer query rows at a time")
    full = outside_mn.repeat(part.shape[0] // m, len(seg))
    return part.masked_fill(full, -math.inf if metric == "cosine" else math.inf)


def nearest_both_ways(a_mc: torch.Tensor, b_nc: torch.Tensor, *, a_bounds: Sequence[int], b_bounds: Sequence[int],
                      outside_mn: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``l2`` nearest distances in both directions from one matrix product: ``(a_to_b, b_to_a)``,
    (M, S_b) each row of ``a`` to each segment of ``b`` and (N, S_a) each row of ``b`` to each
    segment of ``a`` (MuSc's mutual step: each unordered pair of images once). Equal segments
    only (MuSc's images); ``outside_mn`` as in ``nearest``, symmetric.

    ``a_to_b`` is ``nearest(a, b, ...)``'s formula (``|y|^2 - 2 x.y`` in one ``addmm``, its
    minimum plus ``|x|^2``); ``b_to_a`` reuses that matrix, ``- |y|^2 + |x|^2`` added in place: two
    more roundings, so distances agree with ``nearest(b, a, ...)`` to float32 rounding (one ulp
    measured), except near 0 (a patch against itself), where the square root magnifies them.
    """
    sa, sb = _equal(a_bounds, a_mc.shape[0]), _equal(b_bounds, b_nc.shape[0])
    a2, b2 = a_mc.pow(2).sum(-1), b_nc.pow(2).sum(-1)
    t = torch.addmm(b2, a_mc, b_nc.T, beta=1, alpha=-2)  # (M, N): |y|^2 - 2 x.y
    if outside_mn is not None:
        t.masked_fill_(outside_mn.repeat(a_mc.shape[0] // outside_mn.shape[0],
                                         b_nc.shape[0] // outside_mn.shape[1]), math.inf)
    rows = t.view(a_mc.shape[0], -1, sb).amin(-1) + a2[:, None]  # (M, S_b)
    t.sub_(b2).add_(a2[:, None])  # |x|^2 - 2 x.y, in place (one matrix held)
    cols = t.view(-1, sa, b_nc.shape[0]).amin(1).T + b2[:, None]  # (N, S_a)
    return rows.clamp_min(0).sqrt(), cols.clamp_min(0).sqrt()


def _equal(bounds: Sequence[int], n: int) -> int:
    bounds = [int(b) for b in bounds]
    size = bounds[1] - bounds[0] if len(bounds) > 1 else 0
    if bounds[0] != 0 or bounds[-1] != n or size < 1 or any(b - a != size for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"both-ways search needs equal segments from 0 to {n}, got {bounds}")
    return size

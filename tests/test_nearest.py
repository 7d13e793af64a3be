"""The one nearest-patch kernel (``zsad.nearest``): against a brute force from its equations,
blocking never changes a value, and the three detectors that search nearest patches call it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from zsad.nearest import nearest

ROOT = Path(__file__).resolve().parents[1]


def brute(q: np.ndarray, k: np.ndarray, bounds, metric: str, outside=None) -> np.ndarray:
    """Float64, one pair at a time, from the equations."""
    out = np.empty((len(q), len(bounds) - 1))
    for i, x in enumerate(q):
        for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            vals = []
            for j in range(a, b):
                if outside is not None and outside[i % outside.shape[0], j - a]:
                    continue
                y = k[j]
                vals.append(-(x @ y) if metric == "cosine" else float(np.sqrt(((x - y) ** 2).sum())))
            best = min(vals)
            out[i, s] = (1 + best) / 2 if metric == "cosine" else best
    return out


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_nearest_equals_the_brute_force_and_blocks_change_at_most_rounding(metric):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 5)).astype(np.float32)
    k = rng.normal(size=(12, 5)).astype(np.float32)
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        k /= np.linalg.norm(k, axis=1, keepdims=True)
    bounds = (0, 3, 4, 9, 12)  # unequal segments, one of a single key
    whole = nearest(torch.from_numpy(q), torch.from_numpy(k), bounds=bounds, metric=metric)
    np.testing.assert_allclose(whole.numpy(), brute(q.astype(np.float64), k.astype(np.float64), bounds, metric),
                               rtol=1e-5, atol=1e-6)
    for elements in (7, 14, 21, 50):  # one key row per block, segments split and joined
        blocked = nearest(torch.from_numpy(q), torch.from_numpy(k), bounds=bounds, metric=metric,
                          max_elements=elements)
        torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)  # another GEMM shape: rounding only


def test_a_position_mask_excludes_pairs_as_the_brute_force_does():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(12, 3)).astype(np.float32)
    outside = rng.random((4, 4)) < 0.5
    outside[:, 0] = False  # every query keeps one key per segment
    bounds = (0, 4, 8, 12)
    got = nearest(torch.from_numpy(q), torch.from_numpy(k), bounds=bounds, metric="l2",
                  outside_mn=torch.from_numpy(outside), max_elements=32)  # 4 key rows: one segment a block
    np.testing.assert_allclose(got.numpy(), brute(q.astype(np.float64), k.astype(np.float64), bounds, "l2", outside),
                               rtol=1e-5, atol=1e-6)


def test_bad_bounds_metrics_and_split_masked_segments_are_refused():
    q, k = torch.zeros(1, 2), torch.zeros(3, 2)
    with pytest.raises(ValueError, match="raise max_elements to at least 3"):
        nearest(q, k, bounds=(0, 3), metric="l2", outside_mn=torch.zeros(1, 3, dtype=torch.bool), max_elements=2)
    with pytest.raises(ValueError, match="metric must be one of cosine, l2"):
        nearest(q, k, bounds=(0, 3), metric="dot")
    with pytest.raises(ValueError, match="rise from 0 to the 3 keys"):
        nearest(q, k, bounds=(0, 2), metric="l2")


def test_one_kernel_searches_nearest_patches():
    """Few-shot, the tile-mutual mode, MuSc and AnomalyDINO call ``zsad.nearest``; no other core module forms a
    query-key similarity or distance matrix itself."""
    callers = {"zsad/patches.py", "zsad/musc_pairs.py", "zsad/anomalydino.py"}
    for path in sorted((ROOT / "zsad").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "zsad/nearest.py" or rel.startswith("zsad/models/"):
            continue
        tree = ast.parse(path.read_text())
        calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"addmm", "bmm", "cdist"}, f"{rel} forms a distance matrix itself: call zsad.nearest"
        imports = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        if rel in callers:
            assert "nearest" in imports, f"{rel} must search nearest patches with zsad.nearest"


@pytest.mark.parametrize("n,same_position", [(7, None), (12, 1), (3, None), (11, 0)])
def test_musc_pairs_once_equal_every_ordered_pair(n, same_position):
    """``pair_distances`` (each unordered pair once) gives ``nearest_distances(z, z)``'s table to
    float32 rounding off the diagonal; on it (an image against itself, ~0, unused) loosely."""
    from zsad.musc import nearest_distances, pair_distances
    z = torch.nn.functional.normalize(torch.randn(n, 36, 12, generator=torch.Generator().manual_seed(n)), dim=-1)
    old, new = nearest_distances(z, z, same_position=same_position), pair_distances(z, same_position=same_position)
    off = ~torch.eye(n, dtype=torch.bool)
    torch.testing.assert_close(new[off], old[off], rtol=1e-6, atol=1e-6)
    assert (new[~off] - old[~off]).abs().max() < 2e-3


def test_both_ways_equals_two_searches():
    from zsad.nearest import nearest_both_ways
    rng = np.random.default_rng(3)
    a, b = (torch.from_numpy(rng.normal(size=s).astype(np.float32)) for s in ((8, 5), (12, 5)))
    ab, ba = nearest_both_ways(a, b, a_bounds=(0, 4, 8), b_bounds=(0, 4, 8, 12))
    torch.testing.assert_close(ab, nearest(a, b, bounds=(0, 4, 8, 12), metric="l2"), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ba, nearest(b, a, bounds=(0, 4, 8), metric="l2"), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="equal segments"):
        nearest_both_ways(a, b, a_bounds=(0, 3, 8), b_bounds=(0, 12))


def test_k_nearest_squared_equals_the_brute_force():
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(20, 4)).astype(np.float32)
    got = nearest(torch.from_numpy(q), torch.from_numpy(k), bounds=(0, 9, 20), metric="l2sq", k=3, max_elements=30)
    d2 = ((q[:, None, :].astype(np.float64) - k[None].astype(np.float64)) ** 2).sum(-1)
    want = np.stack([np.sort(d2[:, a:b], axis=1)[:, :3].mean(1) for a, b in ((0, 9), (9, 20))], 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)

"""MuSc's math (zsad.musc) against brute-force loops written from the equations, and hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from zsad.musc import (image_scores, interval_count, lnamd, mutual_maps, rescore,
                       score_against_batch, upsample)
from zsad.musc_maps import divide_subsets


def brute_features(tokens_lpc: np.ndarray, r: int) -> np.ndarray:
    """One image's LNAMD features, (L, P, C) float64, by loops: LayerNorm over (C, g, g), the mean
    of the r x r neighbourhood with zeros outside the grid (divided by r*r), unit norm."""
    lay, t, c = tokens_lpc.shape
    g = math.isqrt(t - 1)
    out = np.zeros((lay, g * g, c))
    h = r // 2
    for li in range(lay):
        x = tokens_lpc[li, 1:].astype(np.float64).reshape(g, g, c)
        y = (x - x.mean()) / math.sqrt(x.var() + 1e-5)
        for py in range(g):
            for px in range(g):
                acc = np.zeros(c)
                for dy in range(-h, h + 1):
                    for dx in range(-h, h + 1):
                        if 0 <= py + dy < g and 0 <= px + dx < g:
                            acc += y[py + dy, px + dx]
                v = acc / (r * r)
                out[li, py * g + px] = v / np.linalg.norm(v)
    return out


def brute_maps(tokens: np.ndarray, r_list=(1, 3, 5), fraction=0.3, same_position=None) -> np.ndarray:
    """(N, g, g) float64 by loops over images, patches and layers."""
    n, lay, t, _ = tokens.shape
    g = math.isqrt(t - 1)
    feats = {r: [brute_features(tokens[i], r) for i in range(n)] for r in r_list}
    k = max(1, int((n - 1) * fraction))
    maps = np.zeros((n, g * g))
    for i in range(n):
        for p in range(g * g):
            per_r = []
            for r in r_list:
                per_layer = []
                for li in range(lay):
                    d = []
                    for j in range(n):
                        if j == i:
                            continue
                        best = math.inf
                        for q in range(g * g):
                            if same_position is not None and (abs(q // g - p // g) > same_position
                                                              or abs(q % g - p % g) > same_position):
                                continue
                            best = min(best, float(np.linalg.norm(feats[r][i][li, p] - feats[r][j][li, q])))
                        d.append(best)
                    per_layer.append(np.mean(sorted(d)[:k]))
                per_r.append(np.mean(per_layer))
            maps[i, p] = np.mean(per_r)
    return maps.reshape(n, g, g)


def brute_rescore(scores, cls, k_list):
    s = (scores - scores.min()) / (scores.max() - scores.min())
    w = cls.astype(np.float64) @ cls.astype(np.float64).T
    out = np.zeros((len(k_list), len(s)))
    for a, k in enumerate(k_list):
        for i in range(len(s)):
            keep = np.argsort(-w[i], kind="stable")[:min(k, len(s))]
            out[a, i] = sum(w[i, j] * s[j] for j in keep) / sum(w[i, j] for j in keep)
    return out.mean(0)


def tokens(n, layers=2, g=4, c=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, layers, 1 + g * g, c)).astype(np.float16)


def test_lnamd_equals_brute_force_at_every_r():
    t = tokens(2, g=5)
    for r in (1, 3, 5):
        ours = lnamd(t, r).double().numpy()
        for i in range(2):
            np.testing.assert_allclose(ours[i], brute_features(t[i].astype(np.float64), r), rtol=0, atol=2e-6)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_mutual_maps_equal_brute_force(n):
    t = tokens(n, seed=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n < 5: int(0.3 (n - 1)) = 0, raised to 1 (tested below)
        ours = mutual_maps(t, r_list=(1, 3, 5), fraction=0.3)
        ref = brute_maps(t, (1, 3, 5), 0.3)
    assert ours.dtype == np.float64 and ours.shape == (n, 4, 4)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)  # float32 distances, as MuSc's


@pytest.mark.parametrize("fraction,r_list", [(0.5, (1,)), (1.0, (3, 1)), (0.3, (5,))])
def test_fraction_and_r_order(fraction, r_list):
    t = tokens(7, layers=1, g=3, seed=1)
    np.testing.assert_allclose(mutual_maps(t, r_list=r_list, fraction=fraction), brute_maps(t, r_list, fraction),
                               atol=1e-5)


@pytest.mark.parametrize("d", [0, 1])
def test_same_position_equals_brute_force(d):
    t = tokens(4, g=4, seed=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(mutual_maps(t, r_list=(1, 3), fraction=0.5, same_position=d),
                                   brute_maps(t, (1, 3), 0.5, same_position=d), atol=1e-5)


def test_layer_subset_is_the_layers_alone():
    t = tokens(4, layers=3, seed=2)
    np.testing.assert_allclose(mutual_maps(t, r_list=(1,), fraction=0.5, layers=[0, 2]),
                               mutual_maps(t[:, [0, 2]], r_list=(1,), fraction=0.5), rtol=0, atol=0)


def test_hand_computed_one_patch_images():
    """g = 1: LayerNorm over the 2 channels makes (0, 2) and (0, 4) both (-1, 1)/sqrt(2) and (2, 0)
    its opposite: distances 0 and 2; k = int(0.5 * 2) = 1 (the nearest other image)."""
    t = np.array([[[[9, 9], [0, 2]]], [[[9, 9], [2, 0]]], [[[9, 9], [0, 4]]]], np.float32)
    maps = mutual_maps(t, r_list=(1,), fraction=0.5)
    np.testing.assert_allclose(maps.reshape(-1), [0.0, 2.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(image_scores(maps, 8), [0.0, 2.0, 0.0], atol=1e-5)  # a constant map


def test_interval_count_is_muscs_int_and_one_below_it():
    assert [interval_count(n - 1, 0.3) for n in (5, 11, 21, 200)] == [1, 3, 6, 59]
    with pytest.warns(UserWarning, match="NaN"):
        assert interval_count(3, 0.3) == 1
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        interval_count(3, 0.0)


def test_a_class_of_one_image_is_refused():
    with pytest.raises(ValueError, match="class of 1 image"):
        mutual_maps(tokens(1))


def test_tokens_of_a_non_square_grid_are_refused():
    with pytest.raises(ValueError, match="1 \\+ g\\*g"):
        mutual_maps(np.zeros((3, 1, 6, 4), np.float32))


def test_image_score_is_the_upsampled_maximum():
    """A 3 x 3 grid with its peak in the centre, upsampled to 4 px: the grid points sit at 0, 2/3,
    4/3, 2, so the centre is never sampled and the maximum is (2/3)^2 = 4/9 of the peak."""
    m = np.zeros((1, 3, 3)); m[0, 1, 1] = 1.0
    assert image_scores(m, 4)[0] == pytest.approx(4 / 9, abs=1e-12)
    two = np.array([[[0.0, 1.0], [0.0, 0.0]]])
    assert upsample(two, 3)[0].tolist() == [[0.0, 0.5, 1.0], [0.0, 0.25, 0.5], [0.0, 0.0, 0.0]]


def test_new_images_against_a_batch_are_each_their_row_of_the_whole_batch():
    batch, new = tokens(6, seed=3), tokens(2, seed=4)
    got = score_against_batch(new, batch, r_list=(1, 3), fraction=0.3)
    assert got.shape == (2, 4, 4)
    for q in range(2):  # each new image with the batch alone: the other new image plays no part
        whole = mutual_maps(np.concatenate([batch, new[q: q + 1]]), r_list=(1, 3), fraction=0.3)
        np.testing.assert_allclose(got[q], whole[-1], atol=1e-6)


def test_rescore_equals_brute_force():
    rng = np.random.default_rng(5)
    cls = rng.normal(size=(9, 8)).astype(np.float32)
    cls /= np.linalg.norm(cls, axis=1, keepdims=True)
    s = rng.random(9)
    for k_list in ([1, 8, 9], [1, 2, 3], [4]):
        np.testing.assert_allclose(rescore(s, cls, k_list), brute_rescore(s, cls, k_list), rtol=1e-5, atol=1e-6)  # float32, as MuSc


def test_rescore_k_of_one_is_the_normalised_score_and_off_is_identity():
    cls = np.eye(3, dtype=np.float32)  # each image most similar to itself
    s = np.array([2.0, 4.0, 3.0])
    np.testing.assert_allclose(rescore(s, cls, [1]), [0.0, 1.0, 0.5], atol=1e-7)
    assert rescore(s, cls, [0]).tolist() == s.tolist() and rescore(s, cls, []).tolist() == s.tolist()
    with pytest.raises(ValueError, match="one class token per image"):
        rescore(s, cls[:2], [1])


def test_divide_subsets_partition_each_folder_evenly():
    paths = [f"c/Anomaly/{i}" for i in range(7)] + [f"c/Normal/{i}" for i in range(10)]
    subsets = divide_subsets(paths, 3, seed=0)
    assert sorted(sum(subsets, [])) == list(range(17))
    assert [sum(paths[i].startswith("c/Normal") for i in s) for s in subsets] == [4, 3, 3]
    assert divide_subsets(paths, 3, seed=0) == subsets and divide_subsets(paths, 3, seed=1) != subsets


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_maps_equal_cpu_maps():
    t = tokens(5, seed=6)
    np.testing.assert_allclose(mutual_maps(t, device="cuda"), mutual_maps(t), atol=1e-5)


def test_musc_published_rows_beside_zsads_tables():
    from zsad.detectors import DETECTOR
    from zsad.evaluation import MVTEC_ORDER, VISA_ORDER, seed_rows
    musc_backbone_note = DETECTOR["musc"].published_note
    visa = {c: {"sample_f1_max": 0.5} for c in VISA_ORDER} | {"mean": {"sample_f1_max": 0.5}}
    _, rows = seed_rows(visa, "sample")
    musc = next(r for r in rows if r[0].startswith("MuSc"))
    assert musc[1] == "84.4" and musc[-1] == "89.1" and rows[-1][0] == "zsad"  # pcb1 first, as the seed's tables
    mvtec = {c: {"pixel_f1_max": 0.5} for c in MVTEC_ORDER} | {"mean": {"pixel_f1_max": 0.5}}
    _, rows = seed_rows(mvtec, "pixel")
    assert [r[0] for r in rows] == ["MuSc (ViT-L-14-336, 518)", "zsad"] and rows[0][-1] == "62.2"
    _, rows = seed_rows({"pill": {"sample_f1_max": 0.5}, "mean": {"sample_f1_max": 0.5}}, "sample")
    assert [r[0] for r in rows] == ["zsad"]  # other classes: no published row
    assert "musc-b16 81.61 / 37.84" in musc_backbone_note("visa") and musc_backbone_note("synthetic") is None

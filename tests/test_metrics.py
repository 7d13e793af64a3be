"""Metrics against direct scikit-learn computations and a plain AUPRO reference."""

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from zsad.metrics import PixelAccumulator, aupro, auroc, average_precision, f1_max, pixel_metrics_exact


def f1_max_reference(labels, scores):
    """Plain: F1 of predicting score >= t, for every distinct t."""
    return max(f1_score(labels, scores >= t, zero_division=0) for t in np.unique(scores))


def aupro_reference(masks, maps, limit=0.3):
    """Plain and slow: every distinct threshold, FPR and mean region overlap, trapezoid to `limit`."""
    regs = []
    for m, s in zip(masks, maps):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regs += [s[lab == i] for i in range(1, n + 1)]
    neg = maps[~masks]
    pts = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        pts.append(((neg >= t).mean(), np.mean([(r >= t).mean() for r in regs])))
    xs, ys = np.array(pts).T
    keep = xs <= limit
    x, y = list(xs[keep]), list(ys[keep])
    nxt = np.argmax(xs > limit) if (xs > limit).any() else None
    if nxt is not None:
        y.append(ys[nxt - 1] + (ys[nxt] - ys[nxt - 1]) * (limit - xs[nxt - 1]) / (xs[nxt] - xs[nxt - 1]))
        x.append(limit)
    return np.trapezoid(y, x) / limit


CASES = {
    "random": (np.random.default_rng(1).integers(0, 2, 200), np.random.default_rng(2).random(200)),
    "ties": (np.array([0, 1, 0, 1, 1, 0]), np.array([0.5, 0.5, 0.2, 0.9, 0.5, 0.2])),
    "constant": (np.array([0, 1, 0, 1]), np.full(4, 0.3)),
    "single_positive": (np.eye(1, 50, 7, dtype=int).ravel(), np.linspace(0, 1, 50)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_metrics_against_sklearn(name):
    labels, scores = CASES[name]
    assert f1_max(labels, scores) == pytest.approx(f1_max_reference(labels, scores))
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def test_all_normal_class_gives_nan():
    labels, scores = np.zeros(5, int), np.linspace(0, 1, 5)
    assert math.isnan(f1_max(labels, scores)) and math.isnan(auroc(labels, scores))
    assert math.isnan(average_precision(labels, scores))


def _pixel_case(seed, n=4, size=24):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    masks[0, 3:9, 4:12] = True
    masks[0, 15:18, 15:20] = True
    masks[2, 10:14, 2:5] = True
    maps = np.round(rng.random((n, size, size)) * 0.7 + masks * rng.random((n, size, size)) * 0.4, 3)
    return masks, np.clip(maps, 0, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_aupro_against_plain_reference(seed):
    masks, maps = _pixel_case(seed)
    assert aupro(masks, maps) == pytest.approx(aupro_reference(masks, maps), abs=1e-9)


def test_aupro_single_anomalous_pixel_and_perfect_map():
    masks = np.zeros((2, 8, 8), bool)
    masks[1, 4, 4] = True
    maps = masks.astype(float)
    assert aupro(masks, maps) == pytest.approx(1.0)
    assert aupro(masks, maps) == pytest.approx(aupro_reference(masks, maps))
    assert f1_max(masks, maps) == 1.0


def _accumulate(masks, maps):
    acc = PixelAccumulator()
    for m, s in zip(masks, maps):
        acc.update(m, s)
    return acc


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-4])
def test_streamed_metrics_equal_exact_ones_at_float16(seed, scale):
    """Maps spanning [0, 1], [0, 1e-3] and [0, 1e-4]: streamed == exact on the float16 maps."""
    masks, maps = _pixel_case(seed)
    maps = (maps * scale + np.random.default_rng(seed).random(maps.shape) * 1e-3 * scale).astype(np.float32)
    got = _accumulate(masks, maps).result()
    want = pixel_metrics_exact(masks, maps.astype(np.float16).astype(np.float64))
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


def test_small_valued_hand_case_keeps_its_f1_max():
    """3 anomalous pixels, 4 normal: best at t=0.7 (TP 3, FP 2): F1 = 2 * 0.6 * 1 / 1.6 = 0.75.
    The old fixed [0, 1] bins put every score of the 1e-4-scaled map in bin 0 (F1 0.6 there)."""
    mask = np.array([[1, 1, 1, 0, 0, 0, 0]], bool)
    scores = np.array([[0.9, 0.8, 0.7, 0.85, 0.75, 0.1, 0.05]])
    for scale in (1.0, 1e-4, 1e-6):
        assert _accumulate([mask], [scores * scale]).result()["f1_max"] == pytest.approx(0.75), scale
        assert f1_max(mask, scores * scale) == pytest.approx(0.75)


def test_accumulator_all_normal_and_constant():
    acc = PixelAccumulator()
    acc.update(np.zeros((4, 4), bool), np.full((4, 4), 0.5))
    assert all(math.isnan(v) for v in acc.result().values())
    acc.update(np.eye(4, dtype=bool), np.full((4, 4), 0.5))
    r = acc.result()
    assert r["auroc"] == pytest.approx(0.5)
    assert r["f1_max"] == pytest.approx(f1_max(np.r_[np.zeros(16), np.eye(4).ravel()], np.full(32, 0.5)))

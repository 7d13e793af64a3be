"""Tile scores are the same bits whatever the BLAS threads, the array layout, the order of the
prompts or dimensions; they equal a brute-force loop from the seed's equations; the extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from zsad.aggregate import TextEvidence, sample_score, top_mean
from zsad.config import AggregateConfig
from zsad.scoring import contrast_scores, prompt_contrast, tile_scores, unit_rows

pytestmark = pytest.mark.crosspath


def _inputs(seed: int = 0, t: int = 106, p: int = 882, d: int = 32):
    """The tiny model's shapes: T = 106 tiles is where 1 and 2 OpenBLAS threads gave other dgemm bits."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((t, d)).astype(np.float32)
    text = rng.standard_normal((p, d)).astype(np.float32)
    anomalous = rng.random(p) < 0.5
    return emb, text, anomalous


def _brute(emb, text, anomalous, scale) -> list[float]:
    """The seed's tile score from its equations, one cosine at a time (loops, exact sums)."""
    out = []
    for e in emb.astype(np.float64):
        cos = [math.fsum(e * t) / math.sqrt(math.fsum(e * e)) / math.sqrt(math.fsum(t * t))
               for t in text.astype(np.float64)]
        a = math.fsum(c for c, is_a in zip(cos, anomalous) if is_a) / anomalous.sum()
        n = math.fsum(c for c, is_a in zip(cos, anomalous) if not is_a) / (~anomalous).sum()
        out.append(1 / (1 + math.exp(-scale * (a - n))))
    return out


def test_tile_scores_equal_the_brute_force_equations():
    emb, text, anomalous = _inputs(1, t=7, p=40, d=16)
    got = tile_scores(emb, text, anomalous, 100.0)
    np.testing.assert_allclose(got, _brute(emb, text, anomalous, 100.0), rtol=1e-12, atol=1e-14)


def test_tile_scores_do_not_depend_on_blas_threads():
    """The failure of issue 25: the old ``emb @ text.T`` changed last bits between 1 and 2 threads."""
    emb, text, anomalous = _inputs()
    runs = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            runs.append(tile_scores(emb, text, anomalous, 100.0))
    assert np.array_equal(runs[0], runs[1])


def _misaligned(a: np.ndarray, offset: int) -> np.ndarray:
    buf = np.zeros(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def test_tile_scores_do_not_depend_on_layout_or_dtype_of_equal_values():
    emb, text, anomalous = _inputs(2)
    want = tile_scores(emb, text, anomalous, 100.0)
    layouts = [np.asfortranarray(emb), emb.astype(np.float64), _misaligned(emb, 4), _misaligned(emb, 16),
               np.repeat(emb, 2, axis=0)[::2]]  # F order, widened, misaligned, strided
    for e in layouts:
        assert np.array_equal(tile_scores(e, text, anomalous, 100.0), want)
    assert np.array_equal(tile_scores(emb, np.asfortranarray(text), anomalous, 100.0), want)
    assert np.array_equal(tile_scores(emb, _misaligned(text, 8), anomalous, 100.0), want)


def test_tile_scores_do_not_depend_on_the_order_of_prompts_or_dimensions():
    """Every sum is math.fsum: reordering the terms cannot move a bit."""
    emb, text, anomalous = _inputs(3)
    want = tile_scores(emb, text, anomalous, 100.0)
    order = np.random.default_rng(0).permutation(len(text))
    assert np.array_equal(tile_scores(emb, text[order], anomalous[order], 100.0), want)
    dims = np.random.default_rng(1).permutation(emb.shape[1])
    assert np.array_equal(tile_scores(emb[:, dims], text[:, dims], anomalous, 100.0), want)


def test_class_evidence_scores_equal_the_plain_function_bit_for_bit():
    """What both the cached path and the one-call scorer call (``TextEvidence``) is ``tile_scores``."""
    emb, text, anomalous = _inputs(4)
    ext = np.random.default_rng(2).random(len(text)) < 0.3
    ev = TextEvidence(text, anomalous, ext, 100.0)
    assert np.array_equal(ev.tile_scores(emb, AggregateConfig()), tile_scores(emb, text, anomalous, 100.0))
    winclip = AggregateConfig(seed_states=False, logit_scale=1 / 0.07)
    assert np.array_equal(ev.tile_scores(emb, winclip), tile_scores(emb, text[~ext], anomalous[~ext], 1 / 0.07))


def test_sigmoid_at_the_extremes():
    """exp overflows past 709.78: the score is 0.0 there, never NaN or an OverflowError; 1.0 at the other end."""
    unit = np.array([[1.0, 0.0]])
    for contrast, scale, want in (([-1.0, 0.0], 1e4, 0.0), ([1.0, 0.0], 1e4, 1.0), ([0.0, 0.0], 100.0, 0.5),
                                  ([-7.09, 0.0], 100.0, 1 / (1 + math.exp(709.0)))):
        got = contrast_scores(unit, np.array(contrast), scale)
        assert got.tolist() == [want]
    assert contrast_scores(unit, np.array([-7.1, 0.0]), 100.0).tolist() == [0.0]   # z = 710 > 709
    tiny = contrast_scores(unit, np.array([1e-300, 0.0]), 100.0)[0]
    assert tiny == 0.5  # 1e-298 below half an ulp of 1.0


def test_unit_rows_and_contrast_by_hand():
    rows = unit_rows(np.array([[0.0, 2.0], [3.0, 4.0], [0.0, 0.0]]))
    assert rows.tolist() == [[0.0, 1.0], [0.6, 0.8], [0.0, 0.0]]
    c = prompt_contrast(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]]),
                        np.array([False, False, True, True]))
    assert c.tolist() == [0.3 - 0.5, 0.9 - 0.5]


def test_unit_rows_over_the_whole_float32_range():
    """Embeddings are float32: their squares neither overflow nor underflow in float64, from the
    largest float32 down to the smallest subnormal."""
    big, small = float(np.finfo(np.float32).max), float(np.finfo(np.float32).smallest_subnormal)
    rows = unit_rows(np.array([[big, big], [small, 0.0], [small, small]], np.float32))
    np.testing.assert_allclose(rows, [[2 ** -0.5, 2 ** -0.5], [1.0, 0.0], [2 ** -0.5, 2 ** -0.5]], rtol=1e-15)


def test_top_mean_is_an_exact_sum():
    means = np.array([0.1, 0.2, 0.7, 1e-17, 0.3])
    assert top_mean(np.sort(means)[::-1], 1.0) == math.fsum(means.tolist()) / 5
    assert sample_score(np.array([0.2, 0.4, 0.9, 0.1]), np.array([1, 1, 2, 3]), 0.25) == 0.9


def test_model_outputs_across_torch_thread_counts_within_the_stated_tolerance(tiny_models):
    """Model outputs are bit-identical only on the same kernels and thread count (the cached and
    one-call paths run them so); across thread counts oneDNN splits sums otherwise. Stated: CLIP
    embeddings within 1e-6, CLIPSeg logits within 1e-4, so a logit8 code moves at most one step."""
    import torch

    from zsad.pixelmaps import store_maps
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(6)]
    before, runs = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append((tiny_models.clip.encode_images(tiles),
                         tiny_models.clipseg.predict_logits(tiles[:3], ["a scratch", "a dent"])))
    finally:
        torch.set_num_threads(before)
    (e1, l1), (e2, l2) = runs
    assert np.abs(e1 - e2).max() <= 1e-6 and np.abs(l1 - l2).max() <= 1e-4
    c1, c2 = store_maps(l1, "logit8").astype(int), store_maps(l2, "logit8").astype(int)
    assert np.abs(c1 - c2).max() <= 1

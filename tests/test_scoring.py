"""Hand-computed expectations for tile scores, fusion, pasting and the sample score."""

import math

import numpy as np
import pytest

from tests.evidence import evidence
from zsad.aggregate import aggregate_image, aggregate_variants, component_means, sample_score, top_fraction_count
from zsad.config import AggregateConfig
from zsad.pixelmaps import fuse_prompt_maps, paste_tiles
from zsad.prompts import (SEED_LOCALISING_PROMPTS, build_prompt_set, localising_prompts, object_name_for)
from zsad.scoring import tile_scores


def test_tile_score_averages_similarities_not_embeddings():
    img = np.array([[1.0, 0.0, 0.0]])
    normal = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])   # cos 1 and 0: mean 0.5
    anomal = np.array([[0.0, 0.0, 1.0], [0.8, 0.6, 0.0]])   # cos 0 and 0.8: mean 0.4
    text = np.vstack([normal, anomal])
    p = tile_scores(img, text, np.array([0, 0, 1, 1], bool), 10.0)
    assert p[0] == pytest.approx(1 / (1 + math.exp(-10 * (0.4 - 0.5))))
    # averaging embeddings first would give a different answer
    mean_n, mean_a = normal.mean(0), anomal.mean(0)
    cos = lambda v: v @ img[0] / np.linalg.norm(v)  # noqa: E731
    assert abs(1 / (1 + math.exp(-10 * (cos(mean_a) - cos(mean_n)))) - p[0]) > 0.05


def test_tile_score_needs_both_classes():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        tile_scores(np.ones((1, 2)), np.ones((2, 2)), np.array([True, True]), 1.0)


def test_harmonic_mean_by_hand_and_with_zero():
    maps = np.array([[[0.5, 0.0]], [[0.25, 0.9]], [[1.0, 0.9]]])  # (L=3, 1, 2)
    out = fuse_prompt_maps(maps, "harmonic")
    assert out[0, 0] == pytest.approx(3 / (2 + 4 + 1))
    assert out[0, 1] == 0.0
    assert fuse_prompt_maps(maps, "arithmetic")[0, 0] == pytest.approx(1.75 / 3)
    assert fuse_prompt_maps(maps, "geometric")[0, 0] == pytest.approx((0.5 * 0.25 * 1.0) ** (1 / 3), rel=1e-6)
    assert fuse_prompt_maps(maps, "geometric")[0, 1] == 0.0
    with pytest.raises(ValueError):
        fuse_prompt_maps(maps, "median")


def test_overlap_averaging_and_uncovered_zero():
    maps = [np.full((2, 2), 0.8), np.full((2, 2), 0.2)]
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3]])
    out = paste_tiles(maps, boxes, (4, 4))
    expected = np.array([[0.8, 0.8, 0, 0], [0.8, 0.5, 0.2, 0], [0, 0.2, 0.2, 0], [0, 0, 0, 0]])
    assert np.allclose(out, expected)


def test_paste_resizes_tile_map_to_box():
    out = paste_tiles([np.ones((352, 352))], np.array([[2, 1, 7, 4]]), (5, 8))
    assert np.allclose(out[1:4, 2:7], 1.0) and out.sum() == pytest.approx(15)


def _agg_inputs():
    img = np.array([[1.0, 0.0], [0.0, 1.0]])                       # tile 0 and tile 1
    text = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    anomalous = np.array([False, False, True, True])
    ext = np.array([False, True, False, True])                     # WinCLIP-only: prompts 0 and 2
    maps = np.full((2, 3, 4, 4), 0.5)
    boxes = np.array([[0, 0, 4, 4], [4, 0, 8, 4]])
    return img, text, anomalous, ext, 10.0, maps, boxes, np.array([1, 2]), (4, 8)


def test_scaling_by_tile_score_and_prompt_subset():
    inputs = _agg_inputs()
    s_win = 1 / (1 + np.exp(-10 * np.array([0 - 1, 1 - 0])))        # tile 0 normal-like, tile 1 anomalous
    scaled = aggregate_image(*evidence(*inputs), AggregateConfig(seed_states=False))
    assert np.allclose(scaled.tile_scores_t, s_win)
    assert np.allclose(scaled.pixel_map_hw[:, :4], 0.5 * s_win[0]) and np.allclose(scaled.pixel_map_hw[:, 4:],
                                                                                    0.5 * s_win[1])
    plain = aggregate_image(*evidence(*inputs), AggregateConfig(seed_states=False, scale_by_tile_score=False))
    assert np.allclose(plain.pixel_map_hw, 0.5)
    both = aggregate_image(*evidence(*inputs), AggregateConfig())              # all prompts: both tiles tie at 0.5
    assert np.allclose(both.tile_scores_t, 0.5)


@pytest.mark.crosspath
def test_variants_at_once_equal_one_by_one():
    inputs = _agg_inputs()
    cfgs = [AggregateConfig(fusion=f, top_fraction=t, scale_by_tile_score=s, seed_states=e)
            for f in ("harmonic", "geometric") for t in (0.25, 1.0) for s in (True, False) for e in (True, False)]
    for cfg, got in zip(cfgs, aggregate_variants(*evidence(*inputs), cfgs)):
        want = aggregate_image(*evidence(*inputs), cfg)
        assert got.sample_score == want.sample_score and np.array_equal(got.pixel_map_hw, want.pixel_map_hw)


@pytest.mark.parametrize("n, k", [(1, 1), (3, 1), (4, 1), (9, 3)])
def test_top_25_percent_counts(n, k):
    assert top_fraction_count(n, 0.25) == k


@pytest.mark.parametrize("comp_scores, expected", [
    ([0.7], 0.7),
    ([0.1, 0.9, 0.5], 0.9),
    ([0.1, 0.9, 0.5, 0.3], 0.9),
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], (0.9 + 0.8 + 0.7) / 3),
])
def test_sample_score_top_quarter(comp_scores, expected):
    comps = np.arange(1, len(comp_scores) + 1)
    assert sample_score(np.array(comp_scores), comps) == pytest.approx(expected)


def test_component_mean_before_top_fraction():
    # component 1 has tiles 0.9 and 0.1 (mean 0.5); component 2 a single 0.6 -> top-1 is 0.6, not 0.9
    assert component_means(np.array([0.9, 0.1, 0.6]), np.array([1, 1, 2])).tolist() == [0.5, 0.6]
    assert sample_score(np.array([0.9, 0.1, 0.6]), np.array([1, 1, 2]), 0.25) == pytest.approx(0.6)


def test_prompt_counts():
    ps = build_prompt_set("capsules")
    assert len(ps) == (7 + 12) * 21 + (4 + 19) * 21 == 882
    assert int((~ps.anomalous_p).sum()) == 399 and int(ps.anomalous_p.sum()) == 483
    assert int((~ps.anomalous_p & ~ps.seed_extension_p).sum()) == 147
    assert int((ps.anomalous_p & ~ps.seed_extension_p).sum()) == 84
    assert "a cropped photo of the flawless capsules." in ps.texts
    assert "a photo of a capsules in pieces for anomaly detection." in ps.texts
    assert len(set(ps.texts)) == len(ps.texts)


def test_localising_prompts_as_printed():
    assert len(SEED_LOCALISING_PROMPTS) == 19 and SEED_LOCALISING_PROMPTS.count("an error") == 2
    assert localising_prompts() == SEED_LOCALISING_PROMPTS
    with pytest.raises(ValueError):
        localising_prompts(("a scratch", ""))


def test_object_names():
    assert object_name_for("pipe_fryum") == "pipe fryum" and object_name_for("pcb4") == "pcb"


def test_aggregate_config_validation():
    with pytest.raises(ValueError, match="fusion"):
        AggregateConfig(fusion="max")
    with pytest.raises(ValueError, match="top_fraction"):
        AggregateConfig(top_fraction=0)


@pytest.mark.parametrize("method", ["harmonic", "arithmetic", "geometric"])
def test_table_fusion_of_logit8_maps_equals_fusion_of_their_probabilities(method):
    from zsad.pixelmaps import fuse_prompt_maps, fuse_stored_maps, load_maps, store_maps
    logits = np.random.default_rng(0).normal(-5, 6, (3, 19, 16, 16)).astype(np.float32)  # clipped ends too
    q = store_maps(logits, "logit8")
    np.testing.assert_allclose(fuse_stored_maps(q, method), fuse_prompt_maps(load_maps(q), method), rtol=2e-6)
    assert (fuse_stored_maps(q, method) > 0).all()  # logit8 never underflows to 0

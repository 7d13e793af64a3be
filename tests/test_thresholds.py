"""Decision thresholds: hand cases and scikit-learn cross-checks; unique image ids."""

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from zsad.datasets import DatasetError, image_ids
from zsad.metrics import PixelAccumulator, f1_max
from zsad.thresholds import decide, f1_threshold, fpr_threshold, histogram_fpr_threshold


@pytest.mark.parametrize("seed", range(5))
def test_f1_threshold_gives_the_f1_max_of_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(60) + 0.3 * labels, 2)  # rounding makes ties
    t = f1_threshold(labels, scores)
    assert f1_score(labels, scores >= t) == pytest.approx(f1_max(labels, scores))


def test_f1_threshold_hand_case_and_undefined():
    assert f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])) == 0.4
    assert math.isnan(f1_threshold(np.array([1, 1, 1]), np.array([0.1, 0.5, 0.9])))  # one class only
    assert math.isnan(f1_threshold(np.array([0, 0]), np.array([0.1, 0.2])))


def test_f1_threshold_ties_go_to_the_highest_threshold():
    # t=0.9: P=1, R=1/2; t=0.6: P=1/2, R=1: both F1 2/3 (0.8 and 0.7 give less): keep 0.9
    assert f1_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])) == 0.9


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.1, 0.25, 0.5])
def test_fpr_threshold_flags_at_most_fpr_of_normals(fpr):
    rng = np.random.default_rng(1)
    normal = np.round(rng.random(40), 1)  # heavy ties
    t = fpr_threshold(normal, fpr)
    assert (normal >= t).mean() <= fpr + 1e-12
    # and it is the smallest such threshold among the observed values: one notch lower flags more
    below = normal[normal < t].max()
    assert (normal >= below).mean() > fpr


def test_fpr_threshold_extremes():
    assert fpr_threshold(np.array([0.3]), 0.0) > 0.3
    assert fpr_threshold(np.array([0.0, 0.0]), 0.5) > 0.0  # ties: flagging one of two means flagging both
    with pytest.raises(ValueError, match="at least one normal score"):
        fpr_threshold(np.array([]), 0.1)
    with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\)"):
        fpr_threshold(np.array([0.1]), 1.0)


def test_histogram_fpr_threshold_equals_the_exact_one_on_float16_scores():
    from zsad.metrics import BIN_VALUES, FLOAT16_BINS, float16_bins
    rng = np.random.default_rng(2)
    scores = (rng.random(10_000) ** 3 * 1e-3).astype(np.float16).astype(np.float64)
    t = histogram_fpr_threshold(np.bincount(float16_bins(scores), minlength=FLOAT16_BINS), BIN_VALUES, 0.05)
    assert (scores >= t).mean() <= 0.05 and (scores >= scores[scores < t].max()).mean() > 0.05


def test_pixel_f1_threshold_is_the_f1_max_point():
    rng = np.random.default_rng(3)
    mask = rng.random((40, 40)) < 0.1
    scores = np.clip(rng.random((40, 40)) * 0.6 + 0.4 * mask, 0, 1)
    acc = PixelAccumulator()
    acc.update(mask, scores)
    t = acc.f1_threshold()
    rounded = scores.astype(np.float16).astype(np.float64)
    assert f1_score(mask.ravel(), (rounded >= t).ravel()) == pytest.approx(acc.result()["f1_max"])
    assert acc.result()["f1_max"] == pytest.approx(f1_max(mask, rounded))


def test_decide():
    assert decide(0.5, 0.5) == "anomalous" and decide(0.4999, 0.5) == "normal"
    assert decide(0.9, None) == "unknown" and decide(0.9, math.nan) == "unknown"


def test_image_ids_never_merge_different_files():
    names = ["a.png", "a.jpg", "b c.png", "b_c.png", "ü.png", "日本.png", "x/a.png", "x_a.png", "._a.png"]
    ids = image_ids(names)
    assert len(set(ids)) == len(names)
    assert ids[0] == "a.png" and ids[1] == "a.jpg" and ids[3] == "b_c.png"
    assert all(i and not i.startswith(".") for i in ids)
    assert ids == image_ids(names)  # stable
    with pytest.raises(DatasetError, match="would share the store id"):
        image_ids(["a.png", "a.png"])


def test_variant_strings_are_parsed_strictly():
    from zsad.flows.configs import variant_grid
    assert len(variant_grid("grid")) == 72
    assert [v.logit_scale for v in variant_grid("logit_scale=clip,winclip,50")] == [None, 1 / 0.07, 50.0]
    assert [v.top_fraction for v in variant_grid("top_fraction=0.25,.25,0.5")] == [0.25, 0.5]  # one per value
    assert variant_grid("seed_states=false")[0].seed_states is False
    for bad, message in [("scale_by_tile_score=maybe", "takes true or false"), ("seed_states=0", "true or false"),
                         ("top_fraction=lots", "takes a number"), ("fusion=median", "takes one of"),
                         ("top_fraction=", "has no values"), ("temperature=1", "unknown aggregation field"),
                         ("top_fraction=1.5", r"top_fraction must be in \(0, 1\]"),
                         ("logit_scale=hot", "takes clip, winclip or a number"),
                         ("logit_scale=-1", "logit_scale must be positive")]:
        with pytest.raises(ValueError, match=message):
            variant_grid(bad)


@pytest.mark.crosspath
def test_logit_scale_variant_replaces_clips_own():
    from zsad.aggregate import aggregate_variants
    from zsad.config import AggregateConfig
    from zsad.scoring import tile_scores
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(3, 8)), rng.normal(size=(6, 8))
    anomalous, ext = np.array([0, 0, 0, 1, 1, 1], bool), np.zeros(6, bool)
    maps, boxes = rng.random((3, 2, 4, 4)), np.array([[0, 0, 4, 4], [2, 0, 6, 4], [0, 2, 4, 6]])
    from tests.evidence import evidence
    own, winclip = aggregate_variants(*evidence(img, txt, anomalous, ext, 100.0, maps, boxes, np.array([1, 1, 2]),
                                                (6, 6)), [AggregateConfig(), AggregateConfig(logit_scale=1 / 0.07)])
    assert np.array_equal(own.tile_scores_t, tile_scores(img, txt, anomalous, 100.0))
    assert np.array_equal(winclip.tile_scores_t, tile_scores(img, txt, anomalous, 1 / 0.07))
    assert not np.array_equal(own.pixel_map_hw, winclip.pixel_map_hw)

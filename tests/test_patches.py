"""Few-shot and mutual patch scoring: exact nearest-neighbour checks on hand-made features, the
patch tokens against open_clip's own intermediates, combining the evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.evidence import evidence
from zsad.aggregate import aggregate_variants
from zsad.config import AggregateConfig
from zsad.variants import FewShot, Mutual
from zsad.patches import (combine_maps, few_shot_scores, lowest_mean, mutual_scores, neighbourhood_sizes,
                          pooled_features)


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _brute_nearest(query_pc, keys_kc):
    """Distance (1 - max cos) / 2 of each query row to the key rows, by hand."""
    return (1 - (_unit(query_pc) @ _unit(keys_kc).T).max(axis=1)) / 2


def test_few_shot_hand_made_patches():
    # one tile, one layer, a 1 x 2 grid, 2 channels; memory: one tile of 2 patches
    q = np.array([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 1, 2, 2)
    mem = np.array([[1.0, 0.0], [1.0, 1.0]]).reshape(1, 1, 1, 2, 2)
    out = few_shot_scores(q, mem)
    # first patch equals a reference patch: 0; second: nearest is (1, 1), cos = 1/sqrt(2)
    assert out.shape == (1, 1, 2)
    assert out[0, 0, 0] == pytest.approx(0.0, abs=1e-7)
    assert out[0, 0, 1] == pytest.approx((1 - 1 / np.sqrt(2)) / 2, abs=1e-6)


def test_few_shot_equals_brute_force_over_layers():
    rng = np.random.default_rng(0)
    q, mem = rng.normal(size=(2, 3, 4, 4, 8)), rng.normal(size=(5, 3, 4, 4, 8))
    want = np.mean([_brute_nearest(q[:, lay].reshape(-1, 8), mem[:, lay].reshape(-1, 8)) for lay in range(3)],
                   axis=0).reshape(2, 4, 4)
    np.testing.assert_allclose(few_shot_scores(q, mem), want, atol=1e-5)


def test_neighbourhood_pooling_means_existing_patches_at_borders():
    x = np.array([0.0, 3.0, 6.0]).reshape(1, 1, 1, 3, 1)  # a 1 x 3 grid of one channel
    raw = torch.as_tensor(x, dtype=torch.float32).permute(0, 1, 4, 2, 3).reshape(1, 1, 1, 3)
    pooled = torch.nn.functional.avg_pool2d(raw, 3, 1, 1, count_include_pad=False).flatten().tolist()
    assert pooled == pytest.approx([1.5, 3.0, 4.5])  # the rule pooled_features relies on
    feats = pooled_features(np.concatenate([x, np.ones_like(x)], axis=-1), 3)  # 2 channels: (v, 1)
    assert feats.shape == (1, 3, 2)
    np.testing.assert_allclose(feats[0].numpy(), _unit(np.array([[1.5, 1], [3, 1], [4.5, 1]])), atol=1e-6)


def test_neighbourhood_sizes_and_errors():
    assert neighbourhood_sizes(1) == (1,)
    assert neighbourhood_sizes(5) == (1, 3, 5)
    for bad in (0, 2, -1, 1.0):
        with pytest.raises(ValueError, match="odd whole number"):
            neighbourhood_sizes(bad)


def test_lowest_mean_ties_one_image_and_errors():
    d = np.array([[0.2, 0.5], [0.2, 0.1], [0.9, 0.1]])
    assert lowest_mean(d, 0.3).tolist() == pytest.approx([0.2, 0.1])   # ceil(0.9) = 1: the minimum
    assert lowest_mean(d, 1.0).tolist() == pytest.approx([1.3 / 3, 0.7 / 3])
    assert lowest_mean(d[:1], 0.3).tolist() == pytest.approx([0.2, 0.5])  # one other image
    with pytest.raises(ValueError, match="N >= 1"):
        lowest_mean(np.zeros((0, 2)), 0.3)
    with pytest.raises(ValueError, match="fraction"):
        lowest_mean(d, 0.0)


def _brute_mutual(feats: dict[str, np.ndarray], fraction: float) -> dict[str, np.ndarray]:
    out = {}
    for qid, q in feats.items():
        layers = q.shape[1]
        per_layer = []
        for lay in range(layers):
            qp = q[:, lay].reshape(-1, q.shape[-1])
            d = np.stack([_brute_nearest(qp, k[:, lay].reshape(-1, k.shape[-1])) for kid, k in feats.items()
                          if kid != qid])
            k = max(1, int(np.ceil(fraction * d.shape[0] - 1e-9)))
            per_layer.append(np.sort(d, axis=0)[:k].mean(axis=0))
        out[qid] = np.mean(per_layer, axis=0).reshape(q.shape[0], q.shape[2], q.shape[3])
    return out


@pytest.mark.parametrize("block", [1, 2, 5])
def test_mutual_equals_brute_force_whatever_the_blocks(block):
    rng = np.random.default_rng(1)
    feats = {f"img{i}": rng.normal(size=(int(rng.integers(1, 3)), 2, 3, 3, 6)) for i in range(5)}
    ids = sorted(feats)
    blocks = [[(i, feats[i]) for i in ids[s: s + block]] for s in range(0, len(ids), block)]
    got = mutual_scores({i: feats[i] for i in ids[:3]}, blocks, fraction=0.5)
    want = _brute_mutual(feats, 0.5)
    for i in ids[:3]:
        np.testing.assert_allclose(got[i], want[i], atol=1e-5)


def test_mutual_needs_another_image():
    a = np.ones((1, 1, 1, 1, 2))
    with pytest.raises(ValueError, match="at least one other image"):
        mutual_scores({"a": a}, [[("a", a)]])


def test_defective_patch_stands_out_in_mutual_scores():
    rng = np.random.default_rng(2)
    normal = rng.normal(size=8)
    feats = {f"g{i}": np.tile(normal, (1, 1, 2, 2, 1)) + rng.normal(0, 0.05, (1, 1, 2, 2, 8)) for i in range(6)}
    feats["g0"][0, 0, 1, 1] = rng.normal(size=8)  # one odd patch in one image
    scores = mutual_scores(feats, [list(feats.items())], fraction=0.3)
    assert np.unravel_index(scores["g0"].argmax(), (1, 2, 2)) == (0, 1, 1)
    assert scores["g0"].max() > 5 * max(s.max() for k, s in scores.items() if k != "g0")


def test_combine_rules():
    zs, patch = np.array([[0.2, 0.6]]), np.array([[0.8, 0.0]])
    m, s = combine_maps(zs, patch, 0.4, "mean")
    assert m[0].tolist() == pytest.approx([0.5, 0.3]) and s == pytest.approx(0.6)
    m, s = combine_maps(zs, patch, 0.4, "patch")
    assert m[0].tolist() == pytest.approx([0.8, 0.0]) and s == pytest.approx(0.8)
    with pytest.raises(ValueError, match="combine rule"):
        combine_maps(zs, patch, 0.4, "max")


def test_aggregate_variants_uses_patch_scores_only_for_patch_modes():
    rng = np.random.default_rng(3)
    emb, text = _unit(rng.normal(size=(2, 4))), _unit(rng.normal(size=(4, 4)))
    args = (emb, text, np.array([0, 0, 1, 1], bool), np.zeros(4, bool), 100.0,
            rng.uniform(0.1, 0.9, (2, 3, 4, 4)).astype(np.float32), np.array([[0, 0, 4, 4], [2, 0, 6, 4]]),
            np.array([1, 2]), (4, 6))
    patches = np.zeros((2, 2, 2), np.float32)
    patches[1, 0, 1] = 1.0
    zs, few = aggregate_variants(*evidence(*args), [AggregateConfig(), AggregateConfig(patch=FewShot(combine="patch"))],
                                 patch_tyx=[None, patches])
    assert few.sample_score == pytest.approx(few.pixel_map_hw.max())
    assert few.pixel_map_hw[0, 5] > 0.5 and few.pixel_map_hw[3, 0] == 0.0  # the odd patch: top right of tile 2
    np.testing.assert_array_equal(zs.tile_scores_t, few.tile_scores_t)  # tile scores stay zero-shot
    with pytest.raises(ValueError, match="patch scores"):
        aggregate_variants(*evidence(*args), [AggregateConfig(patch=Mutual())])


def test_patch_tokens_are_open_clips_intermediates(tiny_models):
    clip = tiny_models.clip
    rng = np.random.default_rng(4)
    tiles = [rng.integers(0, 255, (80, 80, 3), dtype=np.uint8) for _ in range(3)]
    emb, patches = clip.encode_images_and_patches(tiles, None)
    np.testing.assert_array_equal(emb, clip.encode_images(tiles))  # the same pass gives the embedding
    layers = clip.resolve_layers(None)
    gy, gx = clip.grid_size
    assert patches.shape == (3, len(layers), gy, gx, clip.width) and patches.dtype == np.float16
    from zsad.models._common import resize_batch
    from PIL import Image
    x = resize_batch(tiles, clip.image_size, Image.BICUBIC, clip.mean, clip.std)
    with torch.inference_mode():
        inter = clip.model.visual.forward_intermediates(x, indices=list(layers), intermediates_only=True,
                                                        output_fmt="NLC")["image_intermediates"]
    for i, t in enumerate(inter):
        np.testing.assert_allclose(patches[:, i].reshape(3, gy * gx, -1), t.numpy(), atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="block indices"):
        clip.encode_images_and_patches(tiles, [99])

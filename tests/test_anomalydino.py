"""AnomalyDINO's math (``zsad.anomalydino``) against a brute force from its equations and against
OpenCV and scipy, the libraries its official code calls (``cv2.resize``, ``cv2.dilate``,
``cv2.morphologyEx``, ``scipy.ndimage.gaussian_filter``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cv2
from scipy.ndimage import gaussian_filter

from zsad.anomalydino import anomaly_map, first_component, foreground_mask, image_score, patch_distances


def brute_distances(test, ref, k):
    """1 - cos to each reference patch, the k smallest averaged (float64, one pair at a time)."""
    out = []
    for x in test:
        d = sorted(1 - float(x @ y) / (np.linalg.norm(x) * np.linalg.norm(y)) for y in ref)
        out.append(sum(d[:k]) / k)
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3])
def test_patch_distances_equal_the_cosine_distance_brute_force(k):
    rng = np.random.default_rng(0)
    test, ref = rng.normal(size=(40, 16)), rng.normal(size=(70, 16))
    got = patch_distances(test, ref, k=k)
    assert got.dtype == np.float64 and got.shape == (40,)
    np.testing.assert_allclose(got, brute_distances(test, ref, k), atol=2e-6)  # float32 arithmetic, as faiss


def test_a_patch_equal_to_a_reference_has_distance_zero_not_below():
    ref = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    assert (patch_distances(ref * 3.0, ref) >= 0).all() and patch_distances(ref, ref).max() < 1e-6


def test_bad_shapes_and_k_are_refused():
    with pytest.raises(ValueError, match="one width"):
        patch_distances(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="k must be in 1..2"):
        patch_distances(np.ones((2, 3)), np.ones((2, 3)), k=3)


@pytest.mark.parametrize("n", [1, 50, 99, 100, 250, 1369])
def test_image_score_is_the_mean_of_the_top_percent(n):
    d = np.random.default_rng(n).random(n)
    top = int(n * 0.01)
    expected = d.max() if top == 0 else math.fsum(sorted(d, reverse=True)[:top]) / top
    assert image_score(d) == pytest.approx(expected, rel=1e-15)


def bilinear_brute(g, size):
    """Bilinear resize with half-pixel centres from its equation, one output pixel at a time
    (source x = (x + 0.5) * w / W - 0.5, clamped at the borders)."""
    h, w = g.shape
    out = np.empty(size)
    for y in range(size[0]):
        for x in range(size[1]):
            sy = min(max((y + 0.5) * h / size[0] - 0.5, 0), h - 1)
            sx = min(max((x + 0.5) * w / size[1] - 0.5, 0), w - 1)
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            out[y, x] = ((1 - fy) * ((1 - fx) * g[y0, x0] + fx * g[y0, x1])
                         + fy * ((1 - fx) * g[y1, x0] + fx * g[y1, x1]))
    return out


@pytest.mark.parametrize("grid,size", [((32, 32), (96, 96)), ((32, 45), (64, 90)), ((7, 5), (93, 61)),
                                       ((10, 10), (10, 10))])
def test_the_map_is_a_half_pixel_bilinear_resize_then_a_reflecting_gaussian(grid, size):
    g = np.random.default_rng(2).random(grid)
    expected = gaussian_filter(bilinear_brute(g, size), sigma=4, mode="reflect")
    got = anomaly_map(g, size=size)
    assert got.shape == size and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # OpenCV's weights are float32


def test_an_int_size_is_a_square():
    assert anomaly_map(np.zeros((4, 4)), size=20).shape == (20, 20)


def reference_mask(tokens, grid, threshold=10.0, kernel_size=3, border=0.2):
    """The mask by the official procedure, OpenCV's morphology included."""
    pc = first_component(tokens)[:, None]
    mask = pc > threshold
    m = mask.reshape(grid)[int(grid[0] * border):int(grid[0] * (1 - border)),
                           int(grid[1] * border):int(grid[1] * (1 - border))]
    if m.sum() <= m.size * 0.35:
        mask = -pc > threshold
    kernel = np.ones((kernel_size, kernel_size), np.uint8)  # mask is (P, 1), as the official first_pc
    mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    return mask.squeeze()


def raster_close(mask):
    """Dilation then closing with a 3-wide window along the raster order, from the definitions:
    dilation pads with background, erosion with foreground."""
    m = np.asarray(mask, bool)
    pad = np.pad(m, 1, constant_values=False)
    m = pad[:-2] | pad[1:-1] | pad[2:]
    pad = np.pad(m, 1, constant_values=False)
    d = pad[:-2] | pad[1:-1] | pad[2:]
    pad = np.pad(d, 1, constant_values=True)
    return pad[:-2] & pad[1:-1] & pad[2:]


def tokens_with_an_object(grid, rng, centre=True, holes=True):
    """Tokens whose first component separates an object (a disc, central or in a corner) from
    the background, with a few background specks inside the object."""
    yy, xx = np.mgrid[:grid[0], :grid[1]]
    cy, cx = (grid[0] / 2, grid[1] / 2) if centre else (2, 2)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < (min(grid) / 3) ** 2
    if holes:
        inside &= rng.random(grid) > 0.1
    direction = rng.normal(size=64)
    tokens = rng.normal(scale=0.5, size=(grid[0] * grid[1], 64)) + np.outer(np.where(inside.ravel(), 30.0, -10.0),
                                                                              direction / np.linalg.norm(direction))
    return tokens.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_the_foreground_mask_equals_the_official_procedure(seed):
    rng = np.random.default_rng(seed)
    grid = (32, 32) if seed % 2 else (23, 37)
    tokens = tokens_with_an_object(grid, rng, centre=seed % 3 != 0)
    got = foreground_mask(tokens, grid)
    assert got.dtype == bool and got.shape == (grid[0] * grid[1],)
    assert np.array_equal(got, reference_mask(tokens, grid))


def test_the_morphology_runs_along_the_raster_order_as_the_official_column():
    rng = np.random.default_rng(11)
    tokens = tokens_with_an_object((12, 17), rng, holes=True)
    pc = first_component(tokens)
    raw = pc > 10 if (pc > 10).reshape(12, 17)[2:9, 3:13].mean() > 0.35 else -pc > 10
    assert np.array_equal(foreground_mask(tokens, (12, 17)), raster_close(raw))


def test_the_mask_keeps_the_object_and_fills_its_holes():
    rng = np.random.default_rng(7)
    tokens = tokens_with_an_object((32, 32), rng, holes=True)
    mask = foreground_mask(tokens, (32, 32)).reshape(32, 32)
    assert mask[16, 16] and not mask[0, 0] and mask[12:20, 12:20].all()


def test_a_wrong_grid_is_refused():
    with pytest.raises(ValueError, match="do not fill a 3 x 3 grid"):
        foreground_mask(np.random.default_rng(0).normal(size=(10, 4)), (3, 3))

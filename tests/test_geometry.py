"""Hand-computed expectations for foreground (80 % rule) and tiling (352, clipping, elongated)."""

import numpy as np
import pytest

from zsad.config import ForegroundConfig, TilingConfig
from zsad.foreground import coverage_keep, extract_foreground
from zsad.tiling import ELONGATED, SQUARE, WHOLE_IMAGE, tile_image


def _mask_with_inside(inside: int, total: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A 1 x 200 strip: mask covers columns [0, total), foreground [total - inside, 200)."""
    m = np.zeros((1, 1, 200), bool)
    m[0, 0, :total] = True
    fg = np.zeros((1, 200), bool)
    fg[0, total - inside:] = True
    return m, fg


@pytest.mark.parametrize("inside, kept", [(79, False), (80, True), (81, True)])
def test_coverage_rule_80_percent(inside, kept):
    m, fg = _mask_with_inside(inside)
    assert coverage_keep(m, fg, 0.8).tolist() == [kept]


def test_empty_mask_never_kept():
    assert coverage_keep(np.zeros((1, 4, 4), bool), np.ones((4, 4), bool), 0.8).tolist() == [False]


def test_extract_foreground_union_components_parts():
    isnet = np.zeros((20, 40), np.uint8)
    isnet[:, :20] = 255  # IS-Net says left half
    masks = np.zeros((4, 20, 40), bool)
    masks[0, 2:8, 2:8] = True      # inside: kept, component A
    masks[1, 3:5, 3:5] = True      # inside, part of A
    masks[2, 12:18, 10:16] = True  # inside: component B
    masks[3, 2:8, 18:30] = True    # 2/12 columns inside: dropped (shadow)
    fg = extract_foreground(masks, isnet, ForegroundConfig())
    assert fg.kept_n.tolist() == [True, True, True, False]
    assert fg.n_components == 2
    assert fg.parts_c.tolist() == [2, 1]
    assert fg.component_n.tolist() == [1, 1, 2, 0]
    assert fg.mask_hw.sum() == 36 + 36
    assert not fg.mask_hw[:, 20:].any()


def test_extract_foreground_without_masks():
    fg = extract_foreground(np.zeros((0, 5, 6), bool), np.full((5, 6), 255, np.uint8), ForegroundConfig())
    assert fg.n_components == 0 and not fg.mask_hw.any()


def _labels(h, w, boxes):
    lab = np.zeros((h, w), np.int32)
    for i, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        lab[y0:y1, x0:x1] = i
    return lab


def test_square_tile_minimum_352_centred():
    lab = _labels(1000, 1000, [(400, 460, 300, 350)])  # 60 x 50 bbox, centre (430, 325)
    t = tile_image(lab, np.array([3]), TilingConfig())
    assert t.boxes_xyxy.tolist() == [[149, 254, 501, 606]]
    assert t.kind_t.tolist() == [SQUARE] and t.component_t.tolist() == [1]


def test_square_tile_larger_component_and_clipping():
    lab = _labels(1000, 800, [(0, 10, 0, 10), (500, 1000, 390, 790)])  # corner speck; 500 x 400 bbox
    t = tile_image(lab, np.array([1, 1]), TilingConfig())
    assert t.boxes_xyxy.tolist() == [[0, 0, 352, 352], [300, 500, 800, 1000]]


def test_image_smaller_than_352_gets_min_side_tiles():
    lab = _labels(200, 300, [(50, 100, 100, 150)])
    t = tile_image(lab, np.array([1]), TilingConfig())
    assert t.boxes_xyxy.tolist() == [[25, 0, 225, 200]]


def test_component_wider_than_image_height_is_tiled_along():
    lab = _labels(200, 1000, [(50, 150, 0, 1000)])
    t = tile_image(lab, np.array([1]), TilingConfig())
    assert (t.boxes_xyxy[:, 3] - t.boxes_xyxy[:, 1] == 200).all()
    assert t.kind_t.tolist() == [ELONGATED] * 10  # stride 100 over 1000 px
    assert t.boxes_xyxy[0, 0] == 0 and t.boxes_xyxy[-1, 2] == 1000


@pytest.mark.parametrize("width, parts, elongated", [(160, 21, True), (160, 20, False), (140, 21, False)])
def test_elongated_rule(width, parts, elongated):
    lab = _labels(600, 600, [(200, 300, 100, 100 + width)])  # height 100: aspect 1.6 / 1.4
    t = tile_image(lab, np.array([parts]), TilingConfig(min_tile=10))
    if elongated:
        # side = short side 100, stride 50, centres at 125, 175, 225, 275 (ceil(160 / 50) = 4)
        assert t.boxes_xyxy.tolist() == [[75, 200, 175, 300], [125, 200, 225, 300], [175, 200, 275, 300],
                                         [225, 200, 325, 300]]
        assert set(t.kind_t.tolist()) == {ELONGATED}
    else:
        assert len(t) == 1 and t.kind_t.tolist() == [SQUARE]


def test_elongated_every_part_in_a_tile_centre():
    h, w = 800, 2400
    lab = np.zeros((h, w), np.int32)
    lab[300:500, 300:2100] = 1  # 200 x 1800, aspect 9, away from the image border
    parts_x = np.linspace(300, 2090, 25).astype(int)  # 25 parts of 10 px along the object
    t = tile_image(lab, np.array([25]), TilingConfig())
    side = t.boxes_xyxy[0, 2] - t.boxes_xyxy[0, 0]
    assert side == 352
    centres = (t.boxes_xyxy[:, 0] + t.boxes_xyxy[:, 2]) / 2
    assert np.allclose(np.diff(centres), 100)  # stride = half the short side
    for x in parts_x + 5:
        assert (np.abs(centres - x) <= side / 4).any(), f"part at x={x} is in no tile's central half"


def test_empty_foreground_falls_back_to_whole_image():
    t = tile_image(np.zeros((120, 90), np.int32), np.zeros(0, np.int32), TilingConfig())
    assert t.boxes_xyxy.tolist() == [[0, 0, 90, 120]]
    assert t.kind_t.tolist() == [WHOLE_IMAGE] and t.component_t.tolist() == [1]

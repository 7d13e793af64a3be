"""An EXIF-rotated JPEG and its mask drawn on the stored pixels share one pixel grid once decoded:
zsad's decoding, AnomalyDINO's (OpenCV) and MuSc's protocol masks turn the mask as the image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zsad.anomalydino import decode as opencv_decode
from zsad.datasets import exif_orientation, ground_truth, load_image, load_mask
from zsad.musc_maps import protocol_mask
from zsad.tasks.fused import ImageFacts


@pytest.fixture()
def rotated(tmp_path):
    """An upright 48 x 80 scene with a red defect, stored rotated with EXIF orientation 6 (shown
    90 degrees clockwise), and its mask drawn on the stored (unrotated) pixels."""
    upright = np.full((48, 80, 3), 128, np.uint8)
    defect = np.zeros((48, 80), bool)
    defect[6:18, 50:70] = True
    upright[defect] = (255, 0, 0)
    stored, stored_mask = np.rot90(upright, 1), np.rot90(defect, 1)  # orientation 6 turns these back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "img.jpg", quality=98, exif=exif)
    Image.fromarray(np.ascontiguousarray(stored_mask).astype(np.uint8) * 255).save(tmp_path / "img_mask.png")
    return tmp_path / "img.jpg", tmp_path / "img_mask.png", defect


def test_the_mask_turns_with_its_image(rotated):
    image_path, mask_path, defect = rotated
    image = load_image(image_path)
    assert image.shape[:2] == (48, 80) and exif_orientation(image_path) == 6
    mask = ground_truth(mask_path, image.shape[:2], exif_orientation(image_path))
    assert np.array_equal(mask, defect)
    red = (image[..., 0] > 200) & (image[..., 1] < 60)
    assert red[mask].mean() > 0.9 and not red[~mask].any()
    with pytest.raises(ValueError, match="mask is 48x80 px but its image is 80x48 px"):
        load_mask(mask_path, image.shape[:2])  # unturned, the mask does not even fit


def test_opencv_decodes_the_same_upright_grid(rotated):
    image_path, _, _ = rotated
    ours, theirs = load_image(image_path), opencv_decode(str(image_path))
    assert theirs.shape == ours.shape
    assert np.abs(theirs.astype(int) - ours.astype(int)).mean() < 2  # two JPEG decoders


def test_musc_protocol_masks_turn_too(rotated, tmp_path):
    _, mask_path, defect = rotated
    Image.fromarray(defect.astype(np.uint8) * 255).save(tmp_path / "upright.png")
    assert np.array_equal(protocol_mask(str(mask_path), 32, 6), protocol_mask(str(tmp_path / "upright.png"), 32))


def test_facts_of_an_old_record_read_the_orientation_from_the_file(rotated):
    image_path, mask_path, defect = rotated
    facts = ImageFacts.from_attrs({"sha256": "x", "label": 1, "mask_path": str(mask_path), "height": 48, "width": 80,
                                   "path": str(image_path)})
    assert facts.orientation == 6 and np.array_equal(facts.ground_truth(), defect)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "JPEG"])
def test_zsad_decoding_is_musc_loaders_for_8_bit_files_without_exif_or_alpha(mode, tmp_path):
    """What MuSc's loader does (``np.asarray(Image.open(p).convert('RGB'))``), zsad's decoding does
    bit for bit on the files MVTec AD and VisA hold: 8-bit RGB, grey or palette, PNG or JPEG,
    no EXIF orientation, no alpha. (They differ on EXIF-rotated, transparent and 16-bit files.)"""
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    if mode == "JPEG":
        path = tmp_path / "x.jpg"
        rgb.save(path, quality=90)
    else:
        path = tmp_path / "x.png"
        (rgb if mode == "RGB" else rgb.convert(mode)).save(path)
    assert np.array_equal(load_image(path), np.asarray(Image.open(path).convert("RGB")))

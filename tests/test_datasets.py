"""Readers on small fake trees in each layout, including broken ones."""

import numpy as np
import pytest
from PIL import Image

from zsad.datasets import (DatasetError, SyntheticSpec, load_image, load_mask, read_dataset, read_folder,
                           read_mvtec, read_visa, write_synthetic)
from zsad.datasets.synthetic import make_image


def _png(path, value=100, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def _visa(root, with_mask=True, columns="object,split,label,image,mask"):
    _png(root / "candle/Data/Images/Normal/0000.JPG")
    _png(root / "candle/Data/Images/Anomaly/0001.JPG")
    if with_mask:
        _png(root / "candle/Data/Masks/Anomaly/0001.png", 255)
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv/1cls.csv").write_text(
        f"{columns}\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/0001.JPG,candle/Data/Masks/Anomaly/0001.png\n")
    return root


def test_visa_reader(tmp_path):
    samples = read_visa(_visa(tmp_path))
    assert [(s.class_name, s.label, s.image_id) for s in samples] == [("candle", 0, "Normal_0000"),
                                                                      ("candle", 1, "Anomaly_0001")]
    assert samples[0].mask_path is None and samples[1].mask_path.endswith("0001.png")
    assert read_dataset("visa", tmp_path, ["candle"]) == samples


def test_visa_normal_and_anomaly_files_of_one_name_stay_apart(tmp_path):
    root = _visa(tmp_path)
    _png(root / "candle/Data/Images/Normal/0001.JPG")
    with open(root / "split_csv/1cls.csv", "a") as f:
        f.write("candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n")
    ids = [s.image_id for s in read_dataset("visa", root)]
    assert sorted(ids) == ["Anomaly_0001", "Normal_0000", "Normal_0001"]


def test_two_files_that_would_share_a_key_are_refused(tmp_path):
    _png(tmp_path / "pill/test/good/000.png")
    _png(tmp_path / "pill/test/good/000.bmp")
    with pytest.raises(DatasetError, match="would share the store key pill/test/good_000"):
        read_dataset("mvtec", tmp_path)


def test_visa_csv_with_bom_reads_and_latin1_is_named(tmp_path):
    root = _visa(tmp_path)
    csv_path = root / "split_csv/1cls.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert len(read_visa(root)) == 2
    csv_path.write_bytes(csv_path.read_bytes()[3:] + b"candle,test,normal,candle/caf\xe9.JPG,\n")
    with pytest.raises(DatasetError, match=r"1cls.csv:5: not UTF-8 text \(byte 0xe9"):
        read_visa(root)


def test_visa_missing_column(tmp_path):
    _visa(tmp_path, columns="object,split,label,image")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['mask'\]"):
        read_visa(tmp_path)


def test_visa_missing_mask_is_reported(tmp_path):
    _visa(tmp_path, with_mask=False)
    with pytest.raises(DatasetError, match="0001.png of anomalous image"):
        read_visa(tmp_path)


def test_visa_missing_csv_and_unknown_class(tmp_path):
    with pytest.raises(DatasetError, match="split_csv/1cls.csv: missing"):
        read_visa(tmp_path)
    _visa(tmp_path)
    with pytest.raises(DatasetError, match=r"no test rows for class\(es\) \['pcb1'\]"):
        read_visa(tmp_path, ["pcb1"])


def test_mvtec_reader_and_missing_mask(tmp_path):
    _png(tmp_path / "bottle/train/good/000.png")
    _png(tmp_path / "bottle/test/good/000.png")
    _png(tmp_path / "bottle/test/broken_large/000.png")
    _png(tmp_path / "bottle/ground_truth/broken_large/000_mask.png", 255)
    samples = read_mvtec(tmp_path)
    assert [(s.defect, s.label, s.image_id) for s in samples] == [("broken_large", 1, "broken_large_000"),
                                                                  ("good", 0, "good_000")]
    (tmp_path / "bottle/ground_truth/broken_large/000_mask.png").unlink()
    with pytest.raises(DatasetError, match="without its mask; expected .*000_mask.png"):
        read_mvtec(tmp_path)


def test_mvtec_wrong_layout(tmp_path):
    (tmp_path / "bottle").mkdir()
    with pytest.raises(DatasetError, match="expected the MVTec AD layout"):
        read_mvtec(tmp_path)


def test_folder_reader_recursive(tmp_path):
    _png(tmp_path / "a/x.png")
    _png(tmp_path / "b/c/y.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    _png(tmp_path / "Z.PNG")           # extensions in any case
    _png(tmp_path / "._Z.png")         # a macOS resource fork: hidden, not an image
    samples = read_folder(tmp_path, "widget")
    ids = [s.image_id for s in samples]
    assert ids[0].startswith("Z.PNG") and ids[1].startswith("a_x.png-") and ids[2].startswith("b_c_y.jpg-")
    assert len(ids) == 3 and {s.label for s in samples} == {-1}
    with pytest.raises(DatasetError, match="no images"):
        read_folder(tmp_path / "a" / "empty" if (tmp_path / "a" / "empty").mkdir() is None else tmp_path)


def test_unreadable_image_and_mask_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(DatasetError, match="bad.png: not a readable image"):
        load_image(bad)
    _png(tmp_path / "m.png", 255, size=(4, 4))
    with pytest.raises(DatasetError, match="mask is 4x4 px but its image is 8x6 px"):
        load_mask(tmp_path / "m.png", (6, 8))


def test_synthetic_is_deterministic_and_labels_honest(tmp_path):
    a, ma = make_image("pill", "scratch", 3, 96)
    b, mb = make_image("pill", "scratch", 3, 96)
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and ma.any()
    root = write_synthetic(tmp_path, SyntheticSpec(image_size=64, n_good=1, n_per_defect=1, n_train=1))
    samples = read_dataset("synthetic", root)
    assert len(samples) == 2 * (1 + 4)
    for s in samples:
        if s.label:
            assert load_mask(s.mask_path, load_image(s.path).shape[:2]).any()

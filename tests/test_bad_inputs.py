"""One bad file must not stop a run: the bad-input corpus through precompute + aggregate, and
faithful decoding of each awkward kind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import SIZE, write_corpus
from PIL import Image

from zsad.stores import StageStore
from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig, PipelineConfig
from zsad.datasets import ImageLimits, load_image, read_dataset, read_folder
from zsad.pipeline import score_image
from zsad.datasets.decode import ImageError

ROOT = Path(__file__).resolve().parents[1]
ZSAD = str(Path(sys.executable).with_name("zsad"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "incoming"
    return root, write_corpus(root)


def test_each_corpus_file_is_listed_decoded_or_refused_as_expected(corpus):
    """Straight through the folder reader and the decoder: skipped files are never listed, the
    good ones decode to (H, W, 3) uint8, each bad one raises ``ImageError`` with its own reason."""
    root, expect = corpus
    assert len(expect) >= 18 and {o for o, _ in expect.values()} == {"scored", "error", "skipped"}
    listed = {Path(s.path) for s in read_dataset("folder", str(root))}
    for rel, (outcome, words) in expect.items():
        assert ((root / rel) in listed) == (outcome != "skipped"), rel
        if outcome == "scored":
            img = load_image(root / rel)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, rel
        elif outcome == "error":
            with pytest.raises(ImageError, match=re.escape(words)):
                load_image(root / rel)


@pytest.mark.slow
def test_corpus_precompute_and_aggregate(corpus, tmp_path, tiny_models):
    root, expect = corpus
    store = str(tmp_path / "store.zarr")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    run = subprocess.run([ZSAD, "precompute", "--dataset", "folder", "--root", str(root), "--name", "corpus",
                          "--classes", "widget", "--store", store], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]  # done, with failures
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = run.stderr.splitlines()
    for rel, (outcome, words) in expect.items():
        mentions = [ln for ln in lines if str(root / rel) in ln]
        if outcome == "scored":
            assert not mentions, (rel, mentions)
        else:
            assert len(mentions) == 1 and words in mentions[0], (rel, outcome, words, mentions)
            assert ("skipped " in mentions[0]) == (outcome == "skipped"), mentions[0]
    n_good = sum(o == "scored" for o, _ in expect.values())
    assert f"{n_good} images done, {sum(o == 'error' for o, _ in expect.values())} failed" in run.stderr
    hashes = plan_stages(PipelineConfig.tiny()).hashes
    st = StageStore(store)
    units = st.list_units("clipseg", hashes["clipseg"], "corpus")
    assert len(units) == n_good and len({u.image_id for u in units}) == n_good  # no two files share a key
    agg = subprocess.run([ZSAD, "aggregate", "--dataset", "corpus", "--store", store], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert agg.returncode == 0 and "Traceback" not in agg.stderr, agg.stderr[-2000:]
    vh = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig())
    # each stored score is the one-call scorer's for its file (the CLI ran torch at its own thread
    # count: model outputs within their stated tolerance, docs/reproducibility.md)
    paths = {s.image_id: s.path for s in read_dataset("folder", str(root), ["widget"])}
    for u in units:
        want = score_image(load_image(paths[u.image_id]), "widget", tiny_models, PipelineConfig.tiny()).sample_score
        assert st.read_attrs(f"aggregate/{vh}/{u.path}")["sample_score"] == pytest.approx(want, abs=1e-5), u.path
    assert not list(Path(store).rglob(".tmp-*"))  # nothing half-written left behind


def test_each_awkward_kind_is_decoded_faithfully(corpus):
    root, _ = corpus
    gray16 = load_image(root / "gray16.png")
    values = np.arange(SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0])  # 0..3071: 12-bit data
    assert gray16.shape == (SIZE[1], SIZE[0], 3) and (gray16[..., 1] == np.rint(values * 255 / 4095)).all()
    assert (gray16[..., 0] == gray16[..., 2]).all()
    f32 = load_image(root / "float32.tif")
    assert f32.min() == 0 and f32.max() == 255  # min..max of a float image outside [0, 1]
    rotated = load_image(root / "rotated.jpg")
    assert rotated.shape == (SIZE[0], SIZE[1], 3)  # EXIF orientation applied: portrait now
    alpha = load_image(root / "alpha.png")
    assert (alpha[0, 0] == 255).all()  # transparent corner over white
    cmyk, plain = load_image(root / "cmyk.jpg"), load_image(root / "plain.png")
    assert np.abs(cmyk.astype(int) - plain.astype(int)).mean() < 12  # CMYK converted, not garbled
    assert load_image(root / "palette.png").shape == (SIZE[1], SIZE[0], 3)


def test_limits_are_checked_before_decoding(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    with pytest.raises(ImageError, match=r"300x200 px = 0.1 megapixels is over the limit of 0.05"):
        load_image(big, ImageLimits(max_pixels=50_000))
    assert load_image(big, ImageLimits(max_pixels=60_000)).shape == (200, 300, 3)
    os.environ["ZSAD_MIN_SIDE"] = "abc"
    try:
        with pytest.raises(ValueError, match="ZSAD_MIN_SIDE must be a whole number"):
            load_image(big)
    finally:
        del os.environ["ZSAD_MIN_SIDE"]


def test_folder_reader_lists_the_corpus_without_collisions(corpus):
    root, expect = corpus
    samples = read_folder(root, "widget")
    assert len(samples) == sum(o != "skipped" for o, _ in expect.values())
    assert len({s.image_id for s in samples}) == len(samples)

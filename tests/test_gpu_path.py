"""The GPU path's options, checked on the CPU: tiles of several images in one batch, mixed
precision. Both leave the exact per-image fp32 mode (the default) as it was."""

from __future__ import annotations

from zsad.flows.command_requests import PrecomputeRequest
import dataclasses

import numpy as np
import pytest

from zsad.stores import StageStore, Unit, unit_key
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages


def _units(samples):
    return [Unit("synthetic", s.class_name, s.split, s.image_id) for s in samples]


@pytest.mark.slow
def test_cross_image_batches_match_the_exact_mode(synthetic_samples, tiny_cfg, store_copy):
    from zsad.flows.precompute import run_precompute
    store = store_copy  # the exact per-image mode, precomputed once per session
    batched = dataclasses.replace(tiny_cfg, images_per_batch=4)
    a, b = plan_stages(tiny_cfg).hashes, plan_stages(batched).hashes
    assert {s for s in a if a[s] != b[s]} == {"clip_image", "clipseg", "clip_patch"}  # own caches, the rest shared
    out = run_precompute(
        PrecomputeRequest(store=store, progress=False, name="synthetic"), samples=synthetic_samples, cfg=batched
    )
    assert out.units_written == 8 * 2 and out.failed == ()
    st = StageStore(store)
    for unit in _units(synthetic_samples):
        ea, eb = (st.read_array(unit_key("clip_image", h["clip_image"], unit), "emb_td") for h in (a, b))
        assert ea.shape == eb.shape and np.abs(ea - eb).max() < 1e-5
        ma, mb = (st.read_array(unit_key("clipseg", h["clipseg"], unit), "maps_tlhw").astype(int) for h in (a, b))
        assert np.abs(ma - mb).max() <= 1  # logit8 codes: at most one step apart


@pytest.mark.slow
def test_a_bad_image_in_a_batch_fails_alone(synthetic_samples, tiny_cfg, tmp_path, monkeypatch):
    from zsad.flows.precompute import run_precompute
    from zsad.tasks import crops
    batched = dataclasses.replace(tiny_cfg, images_per_batch=4)
    bad = _units(synthetic_samples)[1].path
    real = crops.image_crops

    def flaky(store, tiles_hash, unit, image):
        if unit.path == bad:
            raise ValueError(f"{image['path']}: unreadable now")
        return real(store, tiles_hash, unit, image)
    monkeypatch.setattr("zsad.tasks.clip_image.image_crops", flaky)
    worker.forget_stores()
    out = run_precompute(
        PrecomputeRequest(store=str(tmp_path / "s.zarr"), progress=False, name="synthetic"),
        samples=synthetic_samples,
        cfg=batched,
    )
    assert [f.unit.path for f in out.failed] == [bad] and len(out.done) == 7, out.failed


@pytest.mark.slow
def test_bf16_autocast_stays_within_the_stated_tolerance(synthetic_samples, tiny_cfg):
    from zsad.datasets import load_image
    from zsad.pipeline import Models, score_image
    half = dataclasses.replace(tiny_cfg, precision="bf16")
    assert plan_stages(half).hashes["clip_image"] != plan_stages(tiny_cfg).hashes["clip_image"]
    exact, low = Models.load(tiny_cfg), Models.load(half)
    diffs = []
    for s in synthetic_samples[:4]:
        img = load_image(s.path)
        ra, rb = score_image(img, s.class_name, exact, tiny_cfg), score_image(img, s.class_name, low, half)
        diffs.append((abs(ra.sample_score - rb.sample_score), np.abs(ra.pixel_map_hw - rb.pixel_map_hw).max()))
    worst_score, worst_pixel = np.max(diffs, axis=0)
    assert worst_score < 0.01 and worst_pixel < 0.05, (worst_score, worst_pixel)  # README: the tolerance

"""MuSc from the store: the cached path equals the one-call math, sweeps touch no model and no
distance, a new image recomputes only its class's batch, the hybrids and same-position
variants against brute force, read-only runs, the protocol's masks, predict."""

from __future__ import annotations

import shutil
from pathlib import Path
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import copy_store
from zsad.datasets import Sample, read_dataset
from zsad.flows.aggregate import run_variants
from zsad.flows.command_requests import AggregateRequest, PrecomputeRequest
from zsad.flows.precompute import run_precompute
from zsad.musc import image_scores, mutual_maps, rescore
from zsad.musc_maps import protocol_mask
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import CLASS_TOKEN, TOKENS
from zsad.sweep import variant_grid
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages
from zsad.flows.configs import load_pipeline_config

pytestmark = pytest.mark.filterwarnings("ignore:MuSc. int")  # 4 images a class: int(0.3 x 3) = 0, raised to 1

CONFIG = "musc-tiny"
SIZE = 96  # musc-tiny's token stage: 96 px, a 6 x 6 grid


@pytest.fixture(scope="module")
def musc_store(precomputed_store, synthetic_root, tmp_path_factory):
    """The session's tiny store plus MuSc's tokens: the seed's stages have the same hashes, so the
    precompute with musc-tiny computes only ``musc_tokens``."""
    dest = copy_store(precomputed_store, tmp_path_factory.mktemp("musc") / "store.zarr")
    worker._MODELS.clear()  # cold: what an earlier module on this worker loaded must not hide the load counted
    loads = dict(worker.MODEL_LOADS)
    out = run_precompute(PrecomputeRequest(store=dest, progress=False, name="synthetic", config=CONFIG),
                         samples=read_dataset("synthetic", synthetic_root))
    assert not out.failed and out.units_written == 8  # one token unit per image, nothing else
    assert {k: v - loads.get(k, 0) for k, v in worker.MODEL_LOADS.items() if v != loads.get(k, 0)} == {"clip": 1}
    return dest


@pytest.fixture()
def musc_copy(musc_store, tmp_path):
    return copy_store(musc_store, tmp_path / "store.zarr")


def _run(store, variants, **kw):
    return run_variants(AggregateRequest(store=store, config=CONFIG, variants=variants, evaluate=True, **kw))


def _class_tokens(store, cls):
    """The class's units in batch order (sorted), their (N, L, T, C) tokens and class tokens."""
    st, plan = StageStore(store), plan_stages(load_pipeline_config(CONFIG))
    units = sorted(st.list_units("musc_tokens", plan.hashes["musc_tokens"], "synthetic", [cls]), key=lambda u: u.path)
    keys = [unit_key("musc_tokens", plan.hashes["musc_tokens"], u) for u in units]
    return units, np.stack([st.read_array(k, TOKENS) for k in keys]), np.stack([st.read_array(k, CLASS_TOKEN)
                                                                             for k in keys])


def _scores(meta, vh, cls):
    return {row.unit.path: row.sample_score for row in meta[vh].rows[cls]}


@pytest.mark.parametrize("spec,kwargs", [("mode=musc;rscin=false", {}), ("mode=musc", {}),
                                         ("mode=musc;musc_layers=1;r_list=3-1;musc_fraction=1.0", {}),
                                         ("mode=musc;same_position=0", {"same_position": 0}),
                                         ("mode=musc;same_position=1;rscin=false", {"same_position": 1})])
def test_the_store_path_equals_the_one_call_math(musc_store, spec, kwargs):
    (agg,) = variant_grid(spec)
    p = agg.patch
    meta = _run(musc_store, spec, read_only=True)
    (vh,) = meta
    for cls in ("pill", "washer"):
        units, tokens, cls_tokens = _class_tokens(musc_store, cls)
        maps = mutual_maps(tokens, r_list=p.r_list, fraction=p.musc_fraction, layers=p.musc_layers, **kwargs)
        ctx = meta[vh].contexts[cls]
        np.testing.assert_allclose(np.stack([ctx.maps[u.path] for u in units]), maps, rtol=0, atol=1e-6)
        want = rescore(image_scores(maps, SIZE), cls_tokens, p.k_for("synthetic"))
        got = _scores(meta, vh, cls)
        np.testing.assert_allclose([got[u.path] for u in units], want, rtol=0, atol=1e-6)


def test_a_sweep_touches_no_model_and_no_distance_and_a_rerun_writes_nothing(musc_copy):
    first = _run(musc_copy, "mode=musc")
    assert sum(m.written for m in first.values()) == 8
    st, loads = StageStore(musc_copy), dict(worker.MODEL_LOADS)
    plan = plan_stages(load_pipeline_config(CONFIG))
    sources = {(r, u.path): st.read_attrs(unit_key("musc", plan.musc_hash(r, None), u))["source"]
               for r in (1, 3, 5) for u in st.list_units("musc", plan.musc_hash(r, None), "synthetic")}
    assert len(sources) == 24  # 8 images x r = 1, 3, 5
    sweep = "mode=musc;musc_fraction=0.3,1.0;rscin=true,false;musc_layers=0,all;r_list=1-3,5"
    again = _run(musc_copy, sweep)
    assert len(again) == 16 and dict(worker.MODEL_LOADS) == loads  # no model
    assert st.list_units("musc", plan.musc_hash(1, None), "synthetic")  # and no new distance group written:
    assert {s for s, _, _ in st.stages()} >= {"musc"} and len([h for s, h, _ in st.stages() if s == "musc"]) == 3
    assert sum(m.written for m in _run(musc_copy, "mode=musc").values()) == 0


def test_a_new_image_recomputes_only_its_class_batch(musc_copy, synthetic_root, tmp_path):
    _run(musc_copy, "mode=musc")
    st, plan = StageStore(musc_copy), plan_stages(load_pipeline_config(CONFIG))
    h = plan.musc_hash(1, None)

    def sources():
        return {u.path: st.read_attrs(unit_key("musc", h, u))["source"] for u in st.list_units("musc", h, "synthetic")}

    before = sources()
    samples = read_dataset("synthetic", synthetic_root)
    src = next(s for s in samples if s.class_name == "pill" and s.label == 0)
    new = tmp_path / "extra.png"
    img = np.asarray(Image.open(src.path).convert("RGB")).copy()
    img[:16, :16] = 255
    Image.fromarray(img).save(new)
    extra = Sample(str(new), "pill", "test", 1, None, "extra", "blob")
    run_precompute(PrecomputeRequest(store=musc_copy, progress=False, name="synthetic", config=CONFIG),
                   samples=[extra])
    worker.forget_stores()
    _run(musc_copy, "mode=musc")
    after = sources()
    changed = {p for p in before if after[p] != before[p]}
    assert changed == {p for p in before if "/pill/" in p}  # pill's batch, all of it; washer untouched
    assert Unit.parse(next(p for p in after if p.endswith("/extra"))).class_name == "pill"


def _bilinear_align_corners(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Brute force from the equation: output (i, j) samples the grid at (i (g-1)/(h-1), j (g-1)/(w-1))."""
    g = grid.shape[0]
    out = np.zeros((h, w))
    for i in range(h):
        y = i * (g - 1) / (h - 1)
        y0 = min(int(np.floor(y)), g - 2)
        for j in range(w):
            x = j * (g - 1) / (w - 1)
            x0 = min(int(np.floor(x)), g - 2)
            dy, dx = y - y0, x - x0
            out[i, j] = (grid[y0, x0] * (1 - dy) * (1 - dx) + grid[y0, x0 + 1] * (1 - dy) * dx
                         + grid[y0 + 1, x0] * dy * (1 - dx) + grid[y0 + 1, x0 + 1] * dy * dx)
    return out


def test_the_foreground_hybrids_against_brute_force(musc_store):
    from zsad.tasks.aggregate import pixel_map
    plan, st = plan_stages(load_pipeline_config(CONFIG)), StageStore(musc_store, read_only=True)
    base = _run(musc_store, "mode=musc;rscin=false", read_only=True)
    (bh,) = base
    for rule in ("restrict", "weight"):
        meta = _run(musc_store, f"mode=musc;rscin=false;foreground={rule}", read_only=True)
        (vh,) = meta
        (agg,) = variant_grid(f"mode=musc;rscin=false;foreground={rule}")
        for cls in ("pill",):
            got = _scores(meta, vh, cls)
            for unit_path, grid in base[bh].contexts[cls].maps.items():
                unit = Unit.parse(unit_path)
                attrs = st.read_attrs(unit_key("image", plan.hashes["image"], unit))
                full = _bilinear_align_corners(grid, attrs["height"], attrs["width"])
                if rule == "restrict":
                    fg = st.read_array(unit_key("foreground", plan.hashes["foreground"], unit), "mask_hw")
                    want = np.where(fg, full, 0)
                else:
                    want = full * st.read_array(unit_key("isnet", plan.hashes["isnet"], unit), "prob_hw") / 255
                drawn = pixel_map(st, plan, agg, unit, meta[vh].contexts[cls])
                np.testing.assert_allclose(drawn, want, rtol=1e-5, atol=1e-5)
                assert got[unit_path] == pytest.approx(float(want.max()), rel=1e-5, abs=1e-6)


def test_combine_mean_averages_the_seed_and_musc_scores(musc_store):
    meta = _run(musc_store, "mode=zero-shot,musc;combine=mean,patch", read_only=True)
    by_label = {m.label: vh for vh, m in meta.items()}
    zs, alone = by_label["harmonic/top0.25/scaled/seed-prompts"], by_label["musc0.3/r1-3-5/rscin/patch"]
    mean = by_label["harmonic/top0.25/scaled/seed-prompts/musc0.3/r1-3-5/rscin/mean"]
    for cls in ("pill", "washer"):
        a, b, c = _scores(meta, zs, cls), _scores(meta, alone, cls), _scores(meta, mean, cls)
        for p in a:
            assert c[p] == pytest.approx((a[p] + b[p]) / 2, abs=1e-9)


def test_a_read_only_run_writes_nothing_and_scores_the_same(musc_copy):
    before = sorted((s, h) for s, h, _ in StageStore(musc_copy).stages())
    ro = _run(musc_copy, "mode=musc", read_only=True)
    assert sorted((s, h) for s, h, _ in StageStore(musc_copy).stages()) == before
    rw = _run(musc_copy, "mode=musc")
    (vh,) = ro
    for cls in ("pill", "washer"):
        assert _scores(ro, vh, cls) == _scores(rw, vh, cls)


def test_the_musc_protocol_masks_as_musc_resizes_them(tmp_path):
    """PIL's bilinear 2 -> 4 upscale of [[255, 0], [0, 0]]: rows and columns 0-2 stay above 0."""
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[255, 0], [0, 0]], np.uint8)).save(path)
    want = np.zeros((4, 4), bool)
    want[:3, :3] = True
    assert protocol_mask(str(path), 4).tolist() == want.tolist()
    assert not protocol_mask(None, 3).any()


def test_the_musc_protocol_evaluates_at_the_token_size(musc_store):
    zsad = _run(musc_store, "mode=musc", read_only=True)
    musc = _run(musc_store, "mode=musc", read_only=True, protocol="musc")
    (vh,) = zsad
    for cls in ("pill", "washer"):
        assert zsad[vh].evaluators[cls].scores == musc[vh].evaluators[cls].scores  # same image scores
        n_full = zsad[vh].evaluators[cls].pixels.pos.sum() + zsad[vh].evaluators[cls].pixels.neg.sum()
        n_sq = musc[vh].evaluators[cls].pixels.pos.sum() + musc[vh].evaluators[cls].pixels.neg.sum()
        assert (n_full, n_sq) == (4 * 128 * 128, 4 * SIZE * SIZE)


def test_a_musc_variant_needs_the_token_stage(precomputed_store):
    with pytest.raises(ValueError, match="musc_tokens stage"):
        run_variants(AggregateRequest(store=precomputed_store, config="tiny", variants="mode=musc", read_only=True))


def test_predict_scores_files_against_each_other(musc_copy, synthetic_root, tmp_path):
    from zsad.flows.command_requests import PredictRequest
    from zsad.flows.predict import run_predict
    folder = tmp_path / "line"
    folder.mkdir()
    for s in read_dataset("synthetic", synthetic_root):
        if s.class_name == "washer":
            shutil.copy(s.path, folder / f"{s.image_id}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_predict(PredictRequest(paths=(str(folder),), class_name="washer", store=musc_copy, config=CONFIG,
                                         variant="mode=musc", threshold="none", out=str(tmp_path / "out"),
                                         echo=False, progress=False))
    scored = [r for r in out["rows"] if r["status"] == "scored"]
    assert out["n_scored"] == len(scored) == 4 and all(np.isfinite(r["sample_score"]) for r in scored)
    assert len(list((tmp_path / "out" / "heatmaps").glob("*.png"))) == 4


@pytest.mark.slow
def test_kill_minus_9_in_the_token_stage_then_rerun(musc_store, precomputed_store, synthetic_root, tmp_path):
    """``kill -9`` while MuSc's tokens are written (the seed's stages are cached): the rerun
    completes them and every unit equals the uninterrupted run's."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from procs import spawned
    crashed = copy_store(precomputed_store, tmp_path / "crash.zarr")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    cmd = [str(Path(sys.executable).with_name("zsad")), "precompute", "--dataset", "synthetic", "--root",
           str(synthetic_root), "--store", crashed, "--config", CONFIG, "--shard-size", "1"]

    def tokens():
        return len(list(Path(crashed).glob("musc_tokens/*/*/*/*/*/zarr.json")))

    landed = []
    for at in (2, 5):
        with spawned(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
            while proc.poll() is None and tokens() < at:
                time.sleep(0.01)
            landed.append(proc.poll() is None)
    assert any(landed) and tokens() < 8
    with spawned(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        assert proc.wait(timeout=600) == 0
    worker.forget_stores()
    plan = plan_stages(load_pipeline_config(CONFIG))
    a, b = StageStore(musc_store), StageStore(crashed)
    units = a.list_units("musc_tokens", plan.hashes["musc_tokens"], "synthetic")
    assert sorted(u.path for u in b.list_units("musc_tokens", plan.hashes["musc_tokens"], "synthetic")) == \
        sorted(u.path for u in units) and len(units) == 8
    for u in units:
        key = unit_key("musc_tokens", plan.hashes["musc_tokens"], u)
        # a batch of 1 here, of a class there: equal up to the GEMM's rounding, then float16's
        np.testing.assert_allclose(a.read_array(key, TOKENS).astype(np.float32),
                                   b.read_array(key, TOKENS).astype(np.float32), rtol=2e-3, atol=2e-3)


def test_new_files_against_the_cached_batch_equal_their_row_of_the_whole(musc_copy, synthetic_root, tmp_path):
    """``predict --against synthetic``: each file is one more member of washer's cached batch (its
    map is its row of mutual_maps over batch + itself, RsCIN over the same), the batch's own
    distances are computed once and kept, and the files are not compared with each other."""
    from zsad.flows.command_requests import PredictRequest
    from zsad.flows.predict import run_predict
    folder = tmp_path / "line"
    folder.mkdir()
    samples = [s for s in read_dataset("synthetic", synthetic_root) if s.class_name == "washer"]
    for s in samples[:2]:
        img = np.asarray(Image.open(s.path).convert("RGB")).copy()
        img[40:60, 40:60] = 0
        Image.fromarray(img).save(folder / f"{s.image_id}.png")

    def predict():
        return run_predict(PredictRequest(paths=(str(folder),), class_name="washer", store=musc_copy, config=CONFIG,
                                          variant="mode=musc", threshold="none", against="synthetic",
                                          out=str(tmp_path / "out"), echo=False, progress=False))

    out = predict()
    units, tokens, cls_tokens = _class_tokens(musc_copy, "washer")
    st, plan = StageStore(musc_copy), plan_stages(load_pipeline_config(CONFIG))
    h = plan.hashes["musc_tokens"]
    new_units = sorted(st.list_units("musc_tokens", h, "predict", ["washer"]), key=lambda u: u.path)
    by_path = {Path(st.read_attrs(unit_key("image", plan.hashes["image"], u))["path"]).stem: u for u in new_units}
    scores = {Path(r["path"]).stem: r["sample_score"] for r in out["rows"]}
    assert len(scores) == 2
    for image_id, score in scores.items():
        key = unit_key("musc_tokens", h, by_path[image_id])
        whole = np.concatenate([tokens, st.read_array(key, TOKENS)[None]])
        new_raw = image_scores(mutual_maps(whole, r_list=(1, 3, 5), fraction=0.3)[-1:], SIZE)  # its row of the whole
        own_raw = image_scores(mutual_maps(tokens, r_list=(1, 3, 5), fraction=0.3), SIZE)  # the batch's, as cached
        want = rescore(np.concatenate([own_raw, new_raw]),
                       np.concatenate([cls_tokens, st.read_array(key, CLASS_TOKEN)[None]]), (1, 2, 3))[-1]
        assert score == pytest.approx(want, abs=1e-6)
    musc_groups = [(s, h) for s, h, _ in st.stages() if s == "musc"]
    written = sorted(u.path for s, hh in musc_groups for u in st.list_units(s, hh, "synthetic"))
    again = predict()
    assert {Path(r["path"]).stem: r["sample_score"] for r in again["rows"]} == scores
    assert sorted(u.path for s, hh in musc_groups for u in st.list_units(s, hh, "synthetic")) == written
    assert not any(st.list_units(s, hh, "predict") for s, hh in musc_groups)  # the files: no batch of their own


def test_against_needs_a_musc_variant(musc_copy, tmp_path):
    from zsad.flows.command_requests import PredictRequest
    from zsad.flows.predict import run_predict
    with pytest.raises(ValueError, match="--against scores new images against a cached batch"):
        run_predict(PredictRequest(paths=(str(tmp_path),), class_name="washer", store=musc_copy, config=CONFIG,
                                   variant="mode=mutual", threshold="none", against="synthetic",
                                   out=str(tmp_path / "out"), echo=False, progress=False))


@pytest.mark.slow
def test_the_nightly_flow_scores_new_images_against_the_batch(prefect_harness, musc_copy, synthetic_root, tmp_path):
    from zsad.flows.command_requests import NightlyRequest
    from zsad.flows.nightly import nightly
    folder = tmp_path / "incoming"
    folder.mkdir()
    washers = [s for s in read_dataset("synthetic", synthetic_root) if s.class_name == "washer"]
    shutil.copy(washers[0].path, folder / "a.png")
    request = NightlyRequest(root=str(folder), class_name="washer", store=musc_copy, config=CONFIG, threshold="none",
                             variant="mode=musc", against="synthetic", out_dir=str(tmp_path / "runs"))
    first = nightly(request)
    assert first["n_new"] == 1 and first["n_scored"] == 1
    shutil.copy(washers[1].path, folder / "b.png")
    second = nightly(request)
    assert second["n_new"] == 1 and second["n_scored"] == 1  # a.png's score stays: one image against the batch


def test_a_read_only_sweep_computes_the_distances_of_an_r_once(musc_store, monkeypatch):
    from zsad.tasks import musc as musc_tasks
    calls = []
    real = musc_tasks.nearest_block

    def counted(store, plan, r, same_position, batch, queries, sources, device="cpu"):
        calls.append((r, batch.class_name))
        return real(store, plan, r, same_position, batch, queries, sources, device)

    monkeypatch.setattr(musc_tasks, "nearest_block", counted)
    meta = _run(musc_store, "mode=musc;musc_fraction=0.3,1.0;rscin=true,false;r_list=1-3,1", read_only=True)
    assert len(meta) == 8 and sorted(calls) == sorted((r, c) for r in (1, 3) for c in ("pill", "washer"))

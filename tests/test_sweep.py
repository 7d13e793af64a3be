"""Re-aggregation at scale: the grid planner, covered-cell metrics, precision fixes (the fused
stage: ``test_fused``).

The planned path (fused cache, one map per group, metrics on covered cells) is checked against a
per-variant reference written here from the plain core functions (``fuse_stored_maps``,
``paste_tiles``, ``tile_scores``, ``ClassEvaluator.update`` on full-size maps), on the synthetic
set and on a generated VisA-shaped store.
"""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest
import math
from pathlib import Path

import numpy as np
import pytest

from units import visa_store
from zsad.bins import BIN_VALUES, FLOAT16_BINS, CellTruth, GroundTruth
from zsad.metrics import PixelAccumulator
from zsad.pixelmaps import _LOGIT8, LOGIT_STEP, load_maps, paste_cells, paste_tiles, store_maps
from zsad.thresholds import histogram_fpr_threshold

ROOT = Path(__file__).resolve().parents[1]
GRID = "fusion=harmonic,geometric;top_fraction=0.25,1;scale_by_tile_score=true,false;seed_states=true,false"


def test_sigmoid_is_exact_at_extreme_logits():
    """logit8 codes for logits -16 .. -12 dequantise to within float32 rounding of the exact
    sigmoid (the tanh form was 14 % off at -15.6: exactly the values a harmonic mean hinges on)."""
    logits = np.arange(-16.0, -11.99, LOGIT_STEP)
    exact = np.array([math.exp(x) / (1.0 + math.exp(x)) for x in logits])
    got = load_maps(store_maps(logits, "logit8")).astype(np.float64)
    assert np.max(np.abs(got / exact - 1)) < 2 ** -23
    table = _LOGIT8["harmonic"][:33].astype(np.float64)  # 1 / p of the same codes
    assert np.max(np.abs(table * exact - 1)) < 2 ** -22
    assert load_maps(store_maps(np.array([30.0, 0.0]), "logit8")).tolist() == [
        pytest.approx(1 / (1 + math.exp(-15.875))),
        0.5,
    ]


def test_histogram_fpr_threshold_when_the_top_bin_holds_every_normal_pixel():
    """No bin flags at most the FPR share: the threshold goes just above the top value, as the
    image-level ``fpr_threshold`` does, and flags no normal pixel (it used to flag them all)."""
    t = histogram_fpr_threshold(np.array([0, 0, 0, 100]), np.array([0.0, 0.25, 0.5, 0.75]), 0.01)
    assert t > 0.75 and t == np.nextafter(0.75, np.inf)
    counts = np.zeros(FLOAT16_BINS, np.int64)
    counts[15360] = 50  # every normal pixel is exactly 1.0
    t = histogram_fpr_threshold(counts, BIN_VALUES, 0.01)
    assert t > 1.0 and not (np.ones(50) >= t).any()
    counts[:] = 0
    counts[[0, 15360]] = [990, 10]  # 1 % at 1.0: flagging them is allowed
    t = histogram_fpr_threshold(counts, BIN_VALUES, 0.01)
    assert 0 < t <= 1.0  # flags exactly the ten


def _random_case(rng, h=60, w=80, tiles=4):
    x0, y0 = rng.integers(0, w - 20, tiles), rng.integers(0, h - 20, tiles)
    size = rng.integers(12, 30, tiles)
    boxes = np.stack([x0, y0, np.minimum(x0 + size, w), np.minimum(y0 + size, h)], 1)
    maps = [rng.random((16, 16)).astype(np.float32) * rng.choice([1.0, 1e-4, 1e-7]) for _ in range(tiles)]
    mask = np.zeros((h, w), bool)
    for cy, cx, r in zip(rng.integers(0, h, 3), rng.integers(0, w, 3), rng.integers(1, 6, 3)):
        mask[max(0, cy - r): cy + r, max(0, cx - r): cx + r] = True  # regions inside, across and outside tiles
    return maps, boxes, mask


@pytest.mark.parametrize("seed", range(6))
def test_paste_cells_and_cell_metrics_equal_the_full_map(seed):
    rng = np.random.default_rng(seed)
    maps, boxes, mask = _random_case(rng)
    full = paste_tiles(maps, boxes, mask.shape)
    cells = paste_cells(maps, boxes, mask.shape)
    assert np.array_equal(cells.full(), full)  # bit for bit, overlaps included
    for m in (mask, np.zeros_like(mask)):
        want, got = PixelAccumulator(), PixelAccumulator()
        want.update(m, full)
        counts = got.update_cells(CellTruth.layout(GroundTruth.from_mask(m), cells.boxes), cells.cells)
        assert np.array_equal(want.pos, got.pos) and np.array_equal(want.neg, got.neg)
        assert np.allclose(want.region_weight, got.region_weight, rtol=1e-12, atol=1e-12)
        assert want.n_regions == got.n_regions and counts.sum() == m.size
        a, b = want.result(), got.result()
        for k in a:
            assert (math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) < 1e-12


@pytest.mark.parametrize("tiles", [3, 12])  # 3: cell by cell; 12: the dense path (> 4 tiles)
def test_pasted_cells_equal_a_pixel_by_pixel_mean_bit_for_bit(tiles):
    """Brute force: every pixel the float64 mean of the tiles covering it, in tile order."""
    from zsad.pixelmaps import resize_map
    rng = np.random.default_rng(tiles)
    h, w = 40, 52
    x0, y0 = rng.integers(-4, w - 6, tiles), rng.integers(-4, h - 6, tiles)
    boxes = np.stack([x0, y0, x0 + rng.integers(4, 30, tiles), y0 + rng.integers(4, 30, tiles)], 1)
    maps = [rng.random((8, 8)).astype(np.float32) * rng.choice([1.0, 1e-4, 1e-30]) for _ in range(tiles)]
    want = np.zeros((h, w), np.float32)
    clipped = np.clip(boxes, 0, [w, h, w, h])
    resized = [resize_map(m, (b[3] - b[1], b[2] - b[0])) if b[3] > b[1] and b[2] > b[0] else None
               for m, b in zip(maps, clipped)]
    for y in range(h):
        for x in range(w):
            vals = [r[y - b[1], x - b[0]] for r, b in zip(resized, clipped)
                    if r is not None and b[1] <= y < b[3] and b[0] <= x < b[2]]
            if vals:
                total = np.float64(0.0)
                for v in vals:
                    total += np.float64(v)
                want[y, x] = np.float32(total / len(vals))
    got = paste_cells(maps, boxes, (h, w))
    assert np.array_equal(got.full(), want)
    assert sum(v.size for _, v in got.cells) == int((want != 0).sum() + ((want == 0) & _covered(clipped, h, w)).sum())


def _covered(boxes, h, w):
    out = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = True
    return out


def test_one_component_and_empty_cases():
    """One tile, no tile, an image fully covered: cells and metrics still equal the full map."""
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    for boxes, maps in ((np.array([[0, 0, 8, 8]]), [np.full((4, 4), 0.5, np.float32)]),
                        (np.zeros((0, 4), np.int64), []),
                        (np.array([[1, 1, 5, 5]]), [np.zeros((4, 4), np.float32)])):
        full, cells = paste_tiles(maps, boxes, (8, 8)), paste_cells(maps, boxes, (8, 8))
        assert np.array_equal(full, cells.full())
        want, got = PixelAccumulator(), PixelAccumulator()
        want.update(mask, full)
        got.update_cells(CellTruth.layout(GroundTruth.from_mask(mask), cells.boxes), cells.cells)
        assert np.array_equal(want.pos, got.pos) and np.array_equal(want.neg, got.neg)


# ---- the planned path against a per-variant reference --------------------------------------------

def _reference(store_url: str, config: str, variants: str) -> dict[str, dict[str, float]]:
    """Per variant and class, metrics computed the plain way: every variant fuses its maps
    (rounded as the fused cache rounds them), pastes the full image and updates its own evaluator."""
    from zsad.flows.configs import load_pipeline_config, variant_grid
    from zsad.stores import StageStore, unit_key
    from zsad.tasks.plan import plan_stages
    from zsad.aggregate import sample_score
    from zsad.datasets import ground_truth
    from zsad.evaluation import ClassEvaluator, evaluate_classes
    from zsad.pixelmaps import fuse_stored_maps
    from zsad.scoring import tile_scores
    plan, st = plan_stages(load_pipeline_config(config)), StageStore(store_url)
    units = st.list_units("clipseg", plan.hashes["clipseg"], units_dataset(st, plan))
    out = {}
    for agg in variant_grid(variants):
        evs = {}
        for u in units:
            image = st.read_attrs(unit_key("image", plan.hashes["image"], u))
            if image["label"] < 0:
                continue
            tiles, _ = st.read_unit(unit_key("tiles", plan.hashes["tiles"], u))
            emb = st.read_array(unit_key("clip_image", plan.hashes["clip_image"], u), "emb_td")
            text, attrs = st.read_unit(f"clip_text/{plan.hashes['clip_text']}/{u.dataset}/{u.class_name}")
            use = np.ones(len(text["anomalous_p"]), bool) if agg.seed_states else ~text["seed_extension_p"]
            scale = attrs["logit_scale"] if agg.logit_scale is None else agg.logit_scale
            s = tile_scores(emb, text["emb_pd"][use], text["anomalous_p"][use], scale)
            fused = fuse_stored_maps(st.read_array(unit_key("clipseg", plan.hashes["clipseg"], u), "maps_tlhw"),
                                     agg.fusion).astype(plan.fused_dtype)
            maps = fused * s.astype(np.float32)[:, None, None] if agg.scale_by_tile_score else fused
            full = paste_tiles(maps, tiles["boxes_xyxy"], (image["height"], image["width"]))
            evs.setdefault(u.class_name, ClassEvaluator()).update(
                image["label"], sample_score(s, tiles["component_t"], agg.top_fraction),
                ground_truth(image["mask_path"], full.shape), full)
        out[plan.aggregate_hash(agg)] = evaluate_classes(evs)
    return out


def units_dataset(st, plan) -> str:
    return st.children(f"clipseg/{plan.hashes['clipseg']}")[0]


def _assert_same(reference: dict, meta: dict) -> None:
    from zsad.evaluation import evaluate_classes
    assert set(reference) == set(meta)
    for vh, want in reference.items():
        got = evaluate_classes(meta[vh].evaluators)
        for cls, row in want.items():
            for k, v in row.items():
                g = got[cls][k]
                if k.startswith("sample_") or k.startswith("n_"):
                    assert (math.isnan(v) and math.isnan(g)) or v == g, (vh, cls, k)  # bit for bit
                else:
                    assert (math.isnan(v) and math.isnan(g)) or abs(v - g) < 1e-12, (vh, cls, k, v, g)


@pytest.mark.crosspath
@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["synchronous", "processes"])
def test_planned_grid_equals_per_variant_metrics_on_a_visa_shaped_store(tmp_path, scheduler):
    from zsad.flows.aggregate import run_variants
    store = visa_store(tmp_path, 8)
    meta = run_variants(
        AggregateRequest(
            store=store, dataset="visa", config="tiny", variants=GRID, evaluate=True, scheduler=scheduler, chunk=3
        )
    )
    assert len(meta) == 16 and {m.scheduler for m in meta.values()} == {scheduler}
    _assert_same(_reference(store, "tiny", GRID), meta)


@pytest.mark.slow
def test_planned_grid_equals_per_variant_metrics_on_the_synthetic_set(store_copy):
    from zsad.flows.aggregate import run_variants
    store = store_copy
    meta = run_variants(AggregateRequest(store=store, dataset="synthetic", config="tiny", variants=GRID, evaluate=True))
    _assert_same(_reference(store, "tiny", GRID), meta)


def test_float16_rounding_matches_numpy_at_the_extremes():
    """The fast conversion gives numpy's bits: ties to even, subnormals, overflow, NaN, -0."""
    from zsad.bins import float16_bins, round_to_float16
    halves = np.arange(0, 0x7C01, dtype=np.uint16).view(np.float16).astype(np.float32)
    mids = (halves[:-1].astype(np.float64) + np.diff(halves.astype(np.float64)) / 2).astype(np.float32)  # exact ties
    rng = np.random.default_rng(0)
    x = np.concatenate([halves, mids, -halves, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(1e9)),
                        rng.random(100_000, dtype=np.float32) * np.float32(1e-4), [65519.9, 65520.0, 1e30, 1e-45, -0.0,
                                                                                   np.inf, np.nan]]).astype(np.float32)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    assert np.array_equal(round_to_float16(x).view(np.uint16), want)
    finite = x[np.isfinite(x)]
    with np.errstate(over="ignore"):
        assert np.array_equal(float16_bins(finite), np.where(finite.astype(np.float16).view(np.uint16) >= 0x8000, 0,
                                                             finite.astype(np.float16).view(np.uint16)))
    with pytest.raises(ValueError, match="NaN"):
        float16_bins(np.array([0.5, np.nan], np.float32))


@pytest.mark.crosspath
@pytest.mark.parametrize("variants", [GRID, "fusion=arithmetic;top_fraction=0.5"])
def test_torch_pixel_path_equals_the_numpy_path(tmp_path, variants):
    """The ``--device cuda`` path (``zsad.torchpixels``) run on CPU tensors: the same counts as
    the host path, so the same metrics (region weights up to summation order)."""
    from zsad.flows.aggregate import run_variants
    from zsad.flows.configs import load_pipeline_config, variant_grid
    from zsad.tasks.aggregate import AggregateRun, VariantJob, aggregate_units
    from zsad.tasks.plan import plan_stages
    from zsad.evaluation import evaluate_classes
    from zsad.stores import Unit, open_store
    store = visa_store(tmp_path, 6)
    plan = plan_stages(load_pipeline_config("tiny"))
    host = run_variants(AggregateRequest(store=store, dataset="visa", config="tiny", variants=variants, evaluate=True))
    jobs = tuple(VariantJob(plan.aggregate_hash(a), a) for a in variant_grid(variants))
    units = [Unit("visa", "capsules", "test", f"{i:05d}") for i in range(6)]
    run = AggregateRun(open_store(store, read_only=True), plan, jobs, evaluate=True, device="cpu")
    a, b = aggregate_units(run, units[:4]), aggregate_units(run, units[4:])
    dev = a.merge(b).evaluators(run)
    for job in jobs:
        want = evaluate_classes(host[job.variant_hash].evaluators)
        got = evaluate_classes({c: e for (vh, c), e in dev.items() if vh == job.variant_hash})
        for cls in want:
            for k, v in want[cls].items():
                assert (math.isnan(v) and math.isnan(got[cls][k])) or abs(v - got[cls][k]) < 1e-12, (k, v, got[cls][k])
        ev = dev[(job.variant_hash, "capsules")]
        hv = host[job.variant_hash].evaluators["capsules"]
        assert np.array_equal(ev.pixels.pos, hv.pixels.pos) and np.array_equal(ev.pixels.neg, hv.pixels.neg)
        assert np.array_equal(ev.normal_pixels, hv.normal_pixels)


def test_device_cuda_without_a_gpu_is_refused_up_front(tmp_path):
    import torch

    from zsad.flows.aggregate import run_variants
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    store = visa_store(tmp_path, 2)
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        run_variants(
            AggregateRequest(store=store, dataset="visa", config="tiny", variants="seed", evaluate=True, device="cuda")
        )

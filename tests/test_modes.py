"""Zero-shot, few-shot and mutual modes from one cache, on synthetic images with tiny random models.

Random weights know nothing about defects, so zero-shot stays at chance; the patch modes compare
an image's patches with other images' and see local differences even through random features.
That contrast is the honest check that the patch plumbing works end to end.
"""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest, EvaluateRequest, PrecomputeRequest, PredictRequest
import json
import shutil

import numpy as np
import pytest

from zsad.flows.aggregate import run_variants
from zsad.flows.configs import load_pipeline_config
from zsad.flows.evaluate import run_evaluate
from zsad.flows.precompute import run_precompute
from zsad.stores.views import open_unit
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages
from zsad.datasets import Sample, SyntheticSpec, read_dataset, write_synthetic

pytestmark = [pytest.mark.slow]

MODES = "mode=zero-shot,few-shot,mutual;combine=mean,patch"


@pytest.fixture(scope="module")
def modes_store(tmp_path_factory):
    """14 test images (6 good, 8 defective) and 4 references per class, cached with patch tokens."""
    worker.forget_stores()
    tmp = tmp_path_factory.mktemp("modes")
    root = write_synthetic(tmp / "data", SyntheticSpec(image_size=192, n_good=6, n_per_defect=2, n_train=4))
    store, cfg = str(tmp / "store.zarr"), load_pipeline_config("tiny", patches=True)
    for split in ("test", "train"):
        out = run_precompute(
            PrecomputeRequest(store=store, progress=False, name="synthetic"),
            samples=read_dataset("synthetic", root, None, split),
            cfg=cfg,
        )
        assert not out.failed
    return {"root": root, "store": store, "tmp": tmp}


@pytest.fixture(scope="module")
def results(modes_store):
    res = run_evaluate(
        EvaluateRequest(
            store=modes_store["store"],
            dataset="synthetic",
            config="tiny",
            variants=MODES,
            out_dir=str(modes_store["tmp"] / "res"),
            echo=False,
        )
    )
    return {v.label: v.metrics for v in res.values()}


def test_patch_modes_separate_defects_while_zero_shot_is_at_chance(results):
    auroc = {label: m["mean"]["sample_auroc"] for label, m in results.items()}
    print("sample AUROC per mode:", {k: round(v, 3) for k, v in auroc.items()})
    zero = auroc["harmonic/top0.25/scaled/seed-prompts"]
    assert abs(zero - 0.5) < 0.2, auroc
    for label, value in auroc.items():
        if "few-shot" in label or "mutual" in label:
            assert value >= 0.75 and value > zero + 0.2, (label, auroc)
    for label, m in results.items():  # the patch evidence alone localises the defects
        if label.endswith("/patch/r1") or label.endswith("/patch/r3"):
            assert m["mean"]["pixel_auroc"] > 0.9, (label, m["mean"])


def test_one_row_per_mode_in_the_tables(modes_store, results):
    tables = (modes_store["tmp"] / "res" / "tables.md").read_text()
    for label in results:
        assert label in tables
    csv = (modes_store["tmp"] / "res" / "metrics.csv").read_text()
    assert csv.count("/mutual0.3/") == 2 * 3 and csv.count("/few-shot4/") == 2 * 3  # 2 classes + mean each


def test_second_run_recomputes_nothing(modes_store, results):
    st = worker.open_store(modes_store["store"])
    before = st.writes
    meta = run_variants(
        AggregateRequest(store=modes_store["store"], dataset="synthetic", config="tiny", variants=MODES)
    )
    assert all(m.written == 0 and m.n_images == 28 for m in meta.values()), meta
    cfg = load_pipeline_config("tiny", patches=True)
    again = run_precompute(
        PrecomputeRequest(store=modes_store["store"], progress=False, name="synthetic"),
        samples=read_dataset("synthetic", modes_store["root"]),
        cfg=cfg,
    )
    assert again.units_written == 0 and again.models_loaded == 0
    assert st.writes == before


def test_references_never_scored_and_shots_are_seeded(modes_store, results):
    pill = AggregateRequest(store=modes_store["store"], dataset="synthetic", config="tiny", classes=["pill"])
    meta = run_variants(pill.replace(variants="mode=few-shot;shots=2;shot_seed=0,1"))
    assert all(m.n_images == 14 for m in meta.values())  # the 4 train images are not test images
    st = worker.open_store(modes_store["store"])
    refs = {}
    for stage, h, attrs in st.stages():
        if stage == "memory" and attrs["config"]["shots"] == 2:
            refs[attrs["config"]["shot_seed"]] = st.read_attrs(f"memory/{h}/synthetic/pill")["references"]
    assert len(refs[0]) == 2 and refs[0] != refs[1] and all("/train/" in r for r in refs[0] + refs[1])
    with pytest.raises(ValueError, match="only 4 reference image"):
        run_variants(pill.replace(variants="mode=few-shot;shots=5"))


def test_patch_layers_key_the_patch_stage_alone():
    """Asking for patches keys no stage anew (they are cached beside the embeddings); other
    layers change the ``clip_patch`` hash and nothing else."""
    import dataclasses
    off, on = (plan_stages(load_pipeline_config("tiny", patches=p)).hashes for p in (False, True))
    assert off == on
    layers = plan_stages(dataclasses.replace(load_pipeline_config("tiny", patches=True), patch_layers=(0,))).hashes
    assert [s for s in on if on[s] != layers[s]] == ["clip_patch"]


def test_a_reference_among_the_test_images_is_refused(modes_store):
    root, tmp = modes_store["root"], modes_store["tmp"]
    leak = tmp / "leak.png"
    shutil.copy(root / "pill" / "train" / "good" / "001.png", leak)
    tests = read_dataset("synthetic", root, ["pill"])[:3] + [Sample(str(leak), "pill", "test", 0, None, "leak")]
    cfg = load_pipeline_config("tiny", patches=True)
    for samples in (tests, read_dataset("synthetic", root, ["pill"], "train")):
        assert not run_precompute(
            PrecomputeRequest(store=modes_store["store"], progress=False, name="leaky"), samples=samples, cfg=cfg
        ).failed
    with pytest.raises(ValueError, match=r"leak\.png is reference .*001\.png"):
        run_variants(
            AggregateRequest(store=modes_store["store"], dataset="leaky", config="tiny", variants="mode=few-shot")
        )
    run_variants(
        AggregateRequest(store=modes_store["store"], dataset="leaky", config="tiny", variants="mode=mutual")
    )  # no references: nothing leaks


def test_patch_modes_need_patch_features(modes_store):
    root = modes_store["root"]
    samples = read_dataset("synthetic", root, ["washer"])[:3]
    run_precompute(
        PrecomputeRequest(store=modes_store["store"], progress=False, name="nopatch"),
        samples=samples,
        cfg=load_pipeline_config("tiny"),
    )
    with pytest.raises(ValueError, match="--patches"):
        run_variants(
            AggregateRequest(store=modes_store["store"], dataset="nopatch", config="tiny", variants="mode=mutual")
        )
    run_variants(
        AggregateRequest(store=modes_store["store"], dataset="nopatch", config="tiny", variants="seed")
    )  # zero-shot needs none


def test_read_only_mutual_writes_nothing_and_agrees(modes_store, results):
    st = worker.open_store(modes_store["store"])
    spec = "mode=mutual;mutual_fraction=0.5;combine=patch"
    before = st.writes
    request = AggregateRequest(store=modes_store["store"], dataset="synthetic", config="tiny", variants=spec,
                               classes=["washer"], evaluate=True)
    ro = run_variants(request.replace(read_only=True))
    assert st.writes == before
    rw = run_variants(request)
    assert st.writes > before
    (vh,) = ro
    for cls in ("washer",):
        a = sorted((r.unit, r.sample_score) for r in ro[vh].rows[cls])
        b = sorted((r.unit, r.sample_score) for r in rw[vh].rows[cls])
        assert a == b


def test_patch_unit_opens_with_named_dimensions(modes_store):
    plan = plan_stages(load_pipeline_config("tiny", patches=True))
    unit = worker.open_store(modes_store["store"]).list_units("clip_patch", plan.hashes["clip_patch"], "synthetic",
                                                                ["pill"], "test")[0]
    ds = open_unit(modes_store["store"], f"clip_patch/{plan.hashes['clip_patch']}/{unit.path}")
    assert ds["patches_tlyxc"].dims == ("tile", "layer", "y", "x", "channel")
    assert ds["patches_tlyxc"].dtype == np.float16
    assert ds.attrs["layers"] == [0, 1]


def test_predict_few_shot_against_a_reference_folder_and_mutual(modes_store, tmp_path):
    from zsad.flows.predict import run_predict
    root, store = modes_store["root"], modes_store["store"]
    refs = tmp_path / "known-good"
    shutil.copytree(root / "washer" / "train" / "good", refs)
    images = [str(p) for p in sorted((root / "washer" / "test").glob("*/000.png"))]
    request = PredictRequest(paths=images, class_name="washer", store=store, threshold="0.5", out=str(tmp_path / "p"),
                             name="line", reference=str(refs), progress=False, echo=False)
    out = run_predict(request)
    assert out["n_scored"] == len(images) == 5 and out["n_failed"] == 0
    labels = {r["variant"] for r in out["rows"]}
    assert len(labels) == 1 and "/few-shotall@line-ref-" in labels.pop()
    assert all(r["heatmap"] for r in out["rows"])
    st = worker.open_store(store)
    before = st.writes
    again = run_predict(request.replace(out=str(tmp_path / "p2")))
    assert st.writes == before  # references, memory and scores all cached
    assert [r["sample_score"] for r in again["rows"]] == [r["sample_score"] for r in out["rows"]]
    with pytest.raises(ValueError, match="is reference"):
        run_predict(request.replace(paths=[str(refs / "000.png")], out=str(tmp_path / "p3")))
    mutual = run_predict(request.replace(out=str(tmp_path / "p4"), variant="mode=mutual", reference=None))
    assert mutual["n_scored"] == 5 and "/mutual0.3/" in mutual["rows"][0]["variant"]
    with pytest.raises(ValueError, match="takes none"):
        run_predict(request.replace(variant="mode=mutual"))


def test_cli_evaluate_with_a_reference_folder_and_shots(modes_store, tmp_path, capsys):
    from zsad.flows.cli import main
    root, store = modes_store["root"], modes_store["store"]
    refs = tmp_path / "refs" / "pill"
    shutil.copytree(root / "pill" / "train" / "good", refs)
    out = tmp_path / "res"
    assert main(["evaluate", "--store", store, "--classes", "pill", "--reference", str(refs.parent),
                 "--shots", "3", "--seed", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (label,) = [v["label"] for v in metrics.values()]
    assert "/few-shot3@synthetic-ref-" in label and "s2/" in label
    assert main(["evaluate", "--store", store, "--variants", "grid", "--shots", "2", "--out", str(out)]) == 2
    assert "--shots/--shot-seed extend a sweep" in capsys.readouterr().err
    assert main(["evaluate", "--store", store, "--reference", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "--reference" in capsys.readouterr().err


def test_a_new_image_recomputes_its_class_batch_only(modes_store):
    root, store = modes_store["root"], modes_store["store"]
    cfg = load_pipeline_config("tiny", patches=True)
    washers = read_dataset("synthetic", root, ["washer"])
    pills = read_dataset("synthetic", root, ["pill"])[:2]
    run_precompute(PrecomputeRequest(store=store, progress=False, name="grow"), samples=washers[:3] + pills, cfg=cfg)
    first = run_variants(AggregateRequest(store=store, dataset="grow", config="tiny", variants="mode=mutual"))
    assert [m.written for m in first.values()] == [5]
    run_precompute(PrecomputeRequest(store=store, progress=False, name="grow"), samples=washers[3:4], cfg=cfg)
    st = worker.open_store(store)
    before = st.writes
    again = run_variants(AggregateRequest(store=store, dataset="grow", config="tiny", variants="mode=mutual"))
    # the washer batch changed: its 4 mutual units and 4 scores again, and the new image's fused
    # map (made by the first aggregation that needs it); the pills' untouched
    assert [m.written for m in again.values()] == [4] and st.writes - before == 9


def test_a_broken_reference_is_named_and_the_others_are_used(modes_store, tmp_path):
    from zsad.flows.predict import run_predict
    root, store = modes_store["root"], modes_store["store"]
    refs = tmp_path / "refs"
    shutil.copytree(root / "pill" / "train" / "good", refs)
    (refs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image")
    images = [str(p) for p in sorted((root / "pill" / "test").glob("*/000.png"))]
    out = run_predict(PredictRequest(paths=images, class_name="pill", store=store, threshold="0.5",
                                     out=str(tmp_path / "p"), name="brk", reference=str(refs), progress=False,
                                     echo=False))
    scored = [r for r in out["rows"] if r["status"] == "scored"]
    errors = [r for r in out["rows"] if r["status"] == "error"]
    assert len(scored) == len(images) == 5
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.png")
    assert errors[0]["stage"].startswith("reference")
    st = worker.open_store(store)
    (memory,) = [h for stage, h, a in st.stages()
                 if stage == "memory" and a["config"]["reference"].startswith("brk-ref-")]
    assert len(st.read_attrs(f"memory/{memory}/brk/pill")["references"]) == 4  # the four good references


def test_the_one_call_scorer_equals_the_cached_path_in_every_patch_mode(modes_store, tiny_models):
    """``zsad.pipeline.score_images`` (no store) against the cached units of the same variants:
    three washers cached as data set ``trio``, few-shot against the data set's 4 references."""
    import dataclasses

    from zsad.stores import Unit, unit_key
    from zsad.datasets import load_image
    from zsad.pipeline import score_images
    from zsad.variants import AggregateConfig, FewShot, Mutual
    root, store = modes_store["root"], modes_store["store"]
    trio = read_dataset("synthetic", root, ["washer"])[:3]
    refs = [load_image(s.path) for s in read_dataset("synthetic", root, ["washer"], "train")]
    cfg = load_pipeline_config("tiny", patches=True)
    assert not run_precompute(PrecomputeRequest(store=store, progress=False, name="trio"), samples=trio, cfg=cfg).failed
    st, images = worker.open_store(store), [load_image(s.path) for s in trio]
    for agg in (
        AggregateConfig(patch=FewShot(reference="synthetic", combine="patch")),
        AggregateConfig(patch=Mutual()),
    ):
        vh = plan_stages(cfg).aggregate_hash(agg)
        run_variants(AggregateRequest(store=store, dataset="trio", config="tiny", configs=tuple([agg])))
        got = score_images(images, "washer", tiny_models, dataclasses.replace(cfg, aggregate=agg), references=refs)
        for s, r in zip(trio, got):
            want = st.read_attrs(unit_key("aggregate", vh, Unit("trio", "washer", "test", s.image_id)))
            assert r.sample_score == pytest.approx(want["sample_score"], rel=1e-5, abs=1e-6), (agg.mode, s.path)
            assert r.patch_scores_tyx is not None and r.patch_scores_tyx.shape[0] == len(r.tiles)
    with pytest.raises(ValueError, match="also reference images"):
        score_images(images[:1], "washer", tiny_models, dataclasses.replace(cfg, aggregate=AggregateConfig(
            patch=FewShot())), references=refs + images[:1])

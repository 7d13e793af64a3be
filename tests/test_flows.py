"""The cached DAG: resumability, invalidation, exactness against the core, xarray views,
prefect.yaml. One Prefect test harness for the whole session."""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest, EvaluateRequest, PrecomputeRequest
import dataclasses
import importlib
import json
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

from zsad.stores import StageStore, Unit, class_key, unit_key
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig, PipelineConfig, PromptConfig, to_jsonable
from zsad.datasets import load_image
from zsad.pipeline import score_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store_url(tmp_path):
    worker.forget_stores()
    return str(tmp_path / "store.zarr")


def _precompute(root, store, cfg="tiny"):
    from zsad.flows.prefect_flows import precompute
    return precompute(PrecomputeRequest(dataset="synthetic", root=str(root), store=store, config=cfg, progress=False))


def _config_file(tmp_path, cfg: PipelineConfig) -> str:
    path = tmp_path / f"cfg-{abs(hash(str(cfg)))}.json"
    path.write_text(json.dumps(to_jsonable(cfg)))
    return str(path)


@pytest.mark.slow
def test_second_precompute_loads_no_model_and_writes_nothing(prefect_harness, synthetic_root, store_url):
    first = _precompute(synthetic_root, store_url)
    assert first.units_written == 8 * 7 + 2  # 8 images x 7 per-image stages + 2 classes of prompts
    loads = sum(worker.MODEL_LOADS.values())
    second = _precompute(synthetic_root, store_url)
    assert second.units_written == 0 and second.models_loaded == 0
    assert sum(worker.MODEL_LOADS.values()) == loads


@pytest.mark.slow
def test_changing_prompts_recomputes_only_clipseg_and_dependents(prefect_harness, synthetic_root, store_copy,
                                                                  tmp_path):
    base = PipelineConfig.tiny()
    changed = dataclasses.replace(base, prompts=PromptConfig(localising=("a scratch", "a dent")))
    out = _precompute(synthetic_root, store_copy, _config_file(tmp_path, changed))
    assert out.units_written == 8  # clipseg only
    a, b = plan_stages(base), plan_stages(changed)
    assert [s for s in a.hashes if a.hashes[s] != b.hashes[s]] == ["clipseg"]
    assert a.aggregate_hash(AggregateConfig()) != b.aggregate_hash(AggregateConfig())


@pytest.mark.slow
def test_changing_aggregation_touches_no_model(prefect_harness, synthetic_root, store_copy):
    from zsad.flows.prefect_flows import aggregate
    loads = sum(worker.MODEL_LOADS.values())
    out = aggregate(
        AggregateRequest(store=store_copy, dataset="synthetic", config="tiny", variants="fusion=geometric,arithmetic")
    )
    assert len(out) == 2 and all(v["written"] == 8 for v in out.values())
    assert sum(worker.MODEL_LOADS.values()) == loads
    again = aggregate(
        AggregateRequest(store=store_copy, dataset="synthetic", config="tiny", variants="fusion=geometric,arithmetic")
    )
    assert all(v["written"] == 0 for v in again.values())


@pytest.mark.crosspath
@pytest.mark.slow
def test_aggregate_equals_one_call_scorer(prefect_harness, synthetic_root, synthetic_samples, store_copy,
                                          tiny_models, tiny_cfg):
    from zsad.flows.prefect_flows import aggregate
    from zsad.tasks.aggregate import pixel_map
    aggregate(AggregateRequest(store=store_copy, dataset="synthetic", config="tiny", variants="seed", save_maps=True))
    plan = plan_stages(tiny_cfg)
    vh = plan.aggregate_hash(AggregateConfig())
    st = StageStore(store_copy)
    for s in synthetic_samples:
        unit = Unit("synthetic", s.class_name, s.split, s.image_id)
        arrays, attrs = st.read_unit(unit_key("aggregate", vh, unit))
        ref = score_image(load_image(s.path), s.class_name, tiny_models, tiny_cfg)
        assert attrs["sample_score"] == ref.sample_score
        assert np.array_equal(pixel_map(st, plan, AggregateConfig(), unit), ref.pixel_map_hw)
        assert np.array_equal(arrays["pixel_map_hw"], ref.pixel_map_hw.astype(np.float16))  # stored compactly
        assert np.array_equal(np.array(attrs["tile_scores"]), ref.tile_scores_t)  # float64, exact through JSON


@pytest.mark.slow
def test_each_image_is_decoded_once_per_shard(synthetic_root, synthetic_samples, tmp_path, tiny_cfg):
    from zsad.flows.precompute import run_precompute
    from zsad.tasks import decoded
    runs = {}
    for shared in (True, False):
        decoded.enable(shared)
        decoded.STATS.clear()
        worker.forget_stores()
        out = run_precompute(
            PrecomputeRequest(store=str(tmp_path / f"{shared}.zarr"), progress=False, name="synthetic"),
            samples=synthetic_samples,
            cfg=tiny_cfg,
        )
        runs[shared] = (dict(decoded.STATS), out)
    decoded.enable(True)
    # registration decodes each image (it checks the file); IS-Net, SAM, CLIP and CLIPSeg then reuse it
    assert runs[True][0].get("decoded", 0) == 0 and runs[True][0]["hits"] == 8 * 4
    assert runs[False][0]["decoded"] == 8 * 4 and runs[False][0].get("hits", 0) == 0  # before: 4 more decodes
    a, b = (StageStore(str(tmp_path / f"{s}.zarr")) for s in (True, False))
    plan = plan_stages(tiny_cfg)
    for s in synthetic_samples:  # the same bytes either way
        key = unit_key("clipseg", plan.hashes["clipseg"], Unit("synthetic", s.class_name, s.split, s.image_id))
        assert np.array_equal(a.read_array(key, "maps_tlhw"), b.read_array(key, "maps_tlhw"))


@pytest.mark.slow
def test_unit_without_marker_is_recomputed_not_read(prefect_harness, synthetic_root, synthetic_samples, store_copy):
    plan = plan_stages(PipelineConfig.tiny())
    s = synthetic_samples[0]
    key = unit_key("tiles", plan.hashes["tiles"], Unit("synthetic", s.class_name, s.split, s.image_id))
    st = StageStore(store_copy)
    group = st.root[key]
    group.attrs["complete"] = False  # what a crash between arrays and marker leaves behind
    group["boxes_xyxy"][...] = -1   # garbage that must never be read
    assert not st.is_complete(key)
    with pytest.raises(ValueError, match="incomplete"):
        st.read_array(key, "boxes_xyxy")
    worker.forget_stores()
    out = _precompute(synthetic_root, store_copy)
    assert out.units_written == 1
    assert (StageStore(store_copy).read_array(key, "boxes_xyxy") >= 0).all()


@pytest.mark.slow
def test_changed_image_file_is_recomputed(prefect_harness, synthetic_root, synthetic_samples, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    store = str(tmp_path / "s.zarr")
    worker.forget_stores()
    _precompute(root, store)
    path = root / "pill" / "test" / "good" / "000.png"
    from PIL import Image
    img = np.asarray(Image.open(path)).copy()
    img[:10, :10] = 0
    Image.fromarray(img).save(path)
    out = _precompute(root, store)
    assert out.units_written == 7  # image record + 6 per-image stages of that one image


@pytest.mark.slow
def test_xarray_view_has_named_dimensions(prefect_harness, synthetic_root, synthetic_samples, store_copy):
    from zsad.stores.views import open_unit, stage_table
    plan = plan_stages(PipelineConfig.tiny())
    s = synthetic_samples[0]
    unit = Unit("synthetic", s.class_name, s.split, s.image_id)
    ds = open_unit(store_copy, unit_key("clipseg", plan.hashes["clipseg"], unit))
    assert ds["maps_tlhw"].dims == ("tile", "prompt", "y", "x")
    n_tiles = StageStore(store_copy).read_array(unit_key("tiles", plan.hashes["tiles"], unit), "boxes_xyxy").shape[0]
    assert ds["maps_tlhw"].shape == (n_tiles, 19, 64, 64)
    assert list(ds["prompt"].values) == list(ds.attrs["prompts"])
    import xarray as xr  # plain xarray, no zsad view: the prompt texts are a coordinate too
    key = unit_key("clipseg", plan.hashes["clipseg"], unit)
    plain = xr.open_zarr(store_copy, group=key, consolidated=False)
    assert "prompt" in plain.coords and list(plain["prompt"].values) == list(ds.attrs["prompts"])
    text = xr.open_zarr(store_copy, group=class_key("clip_text", plan.hashes["clip_text"], "synthetic", s.class_name),
                        consolidated=False)
    assert text["emb_pd"].dims == ("prompt", "embed") and text.sizes["prompt"] == len(text["prompt"].values) == 882
    tiles = StageStore(store_copy).read_unit(unit_key("tiles", plan.hashes["tiles"], unit))[0]
    assert (ds["component"].values == tiles["component_t"]).all() and ds["box_xyxy"].dims == ("tile", "corner")
    assert (ds["box_xyxy"].values == tiles["boxes_xyxy"]).all()
    isn = open_unit(store_copy, unit_key("isnet", plan.hashes["isnet"], unit))
    assert isn["prob_hw"].dims == ("y", "x") and isn["prob_hw"].shape == (128, 128)
    assert (isn["x"].values == np.arange(128)).all()
    from zsad.flows.prefect_flows import aggregate
    aggregate(AggregateRequest(store=store_copy, dataset="synthetic", config="tiny"))
    table = stage_table(store_copy, "synthetic", plan.aggregate_hash(AggregateConfig()), plan.hashes["image"])
    from zsad.stores.views import variant_table
    assert variant_table(store_copy, "synthetic", plan.aggregate_hash(AggregateConfig())).equals(table)  # one call
    assert table["sample_score"].dims == ("image",) and table.sizes["image"] == 8
    assert set(table["label"].values.tolist()) == {0, 1}


def test_prefect_yaml_entrypoints_resolve_to_flows():
    from prefect import Flow
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = [d["name"] for d in spec["deployments"]]
    assert any(d.get("schedules") for d in spec["deployments"]), "a scheduled deployment is expected"
    assert len(names) >= 2
    for dep in spec["deployments"]:
        path, func = dep["entrypoint"].split(":")
        module = importlib.import_module("zsad." + path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, func), Flow), dep["entrypoint"]
        flow_obj = getattr(module, func)
        assert set(dep["parameters"]) == {"request"} == set(flow_obj.parameters.properties), dep["name"]
        hints = typing.get_type_hints(flow_obj.fn)
        fields = {f.name for f in dataclasses.fields(hints["request"])}
        given = set(dep["parameters"]["request"])
        assert given <= fields, (dep["name"], given - fields)


def test_aggregate_flow_never_imports_a_model(synthetic_root, tmp_path):
    code = ("import sys; import zsad.flows.aggregate, zsad.tasks.aggregate; "
            "bad = [m for m in ('zsad.models', 'open_clip', 'segment_anything', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_importing_the_tasks_starts_no_thread():
    """The background decoder starts on the first prefetch, not at import (a library import
    that starts threads surprises forked workers and interpreters shutting down)."""
    code = (
        "import threading, zsad.tasks.decoded, zsad.tasks.worker, zsad.tasks.runner, zsad.tasks.shard, zsad.tasks.aggregate; "
        "names = [t.name for t in threading.enumerate()]; assert names == ['MainThread'], names"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow
def test_variants_store_no_maps_unless_asked_and_streamed_metrics_match_stored_maps(prefect_harness, synthetic_root,
                                                                                   store_copy, tmp_path):
    from zsad.flows.aggregate import run_variants
    from zsad.flows.evaluate import run_evaluate
    from zsad.datasets import ground_truth
    from zsad.evaluation import ClassEvaluator, with_mean
    maps = lambda: list(Path(store_copy).glob("aggregate/*/synthetic/*/*/*/pixel_map_hw"))  # noqa: E731
    run_variants(
        AggregateRequest(
            store=store_copy,
            dataset="synthetic",
            config="tiny",
            variants="fusion=harmonic,geometric;top_fraction=0.25,1",
        )
    )
    streamed = run_evaluate(
        EvaluateRequest(store=store_copy, dataset="synthetic", out_dir=str(tmp_path / "r"), echo=False)
    )
    assert maps() == []  # a grid and an evaluation wrote no pixel map
    vh = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig())
    st = StageStore(store_copy)
    unit = st.list_units("aggregate", vh, "synthetic")[0]
    arrays, attrs = st.read_unit(unit_key("aggregate", vh, unit))
    assert arrays == {} and attrs["has_map"] is False  # scores as attributes: one small file per unit
    assert len(attrs["tile_scores"]) >= len(attrs["component_scores"]) >= 1
    run_variants(
        AggregateRequest(store=store_copy, dataset="synthetic", config="tiny", variants="seed", save_maps=True)
    )  # asked: float16 maps
    assert len(maps()) == 8
    evaluators = {}
    image_hash = plan_stages(PipelineConfig.tiny()).hashes["image"]
    for u in st.list_units("aggregate", vh, "synthetic"):
        arrays, attrs = st.read_unit(unit_key("aggregate", vh, u))
        image = st.read_attrs(unit_key("image", image_hash, u))
        mask = ground_truth(image["mask_path"], arrays["pixel_map_hw"].shape)
        evaluators.setdefault(u.class_name, ClassEvaluator()).update(image["label"], attrs["sample_score"], mask,
                                                                     arrays["pixel_map_hw"])
    from_maps = with_mean({c: e.result() for c, e in sorted(evaluators.items())})
    assert streamed[vh].metrics == from_maps  # exact: both see the same float16 values

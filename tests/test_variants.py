"""Aggregation variants: the typed config, its records, the sweep grammar and pinned hashes.

The hashes below were computed by the code before ``AggregateConfig`` grew its nested ``patch``
(commit 55250b6, flat fields): stores written then must keep their cache entries.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig, PipelineConfig, config_from_dict, stage_hash, to_jsonable
from zsad.sweep import GRID, expand, format_axes, parse_axes, variant_grid, with_shots
from zsad.variants import FewShot, Mutual, label

PINNED = {  # sweep -> (number of variants, sha256 of their hashes joined, first hash)
    "seed": (1, None, "7b6b38adb47b76b6"),
    "grid": (72, "21117e18b9d24c8c", None),
    "mode=few-shot;shots=0,1,4;shot_seed=0,3;combine=mean,patch": (12, "f471ead399012754", "8b87cc413abf3cbd"),
    "mode=mutual;mutual_fraction=0.3,0.5;neighbourhood=1,3,5": (6, "051ef0cef98234b4", "f3669ed793a2a424"),
    "mode=few-shot;reference=visa-ref;neighbourhood=3": (1, None, "6fee16ecc6d841f5"),
}


@pytest.mark.parametrize("spec", sorted(PINNED))
def test_hashes_are_pinned(spec):
    plan = plan_stages(PipelineConfig.tiny())
    hashes = [plan.aggregate_hash(a) for a in variant_grid(spec)]
    n, joined, first = PINNED[spec]
    assert len(hashes) == n
    if joined:
        assert hashlib.sha256(" ".join(hashes).encode()).hexdigest()[:16] == joined
    if first:
        assert hashes[0] == first


def test_zero_shot_hash_view_is_the_five_seed_fields():
    plan = plan_stages(PipelineConfig.tiny())
    view = {"fusion": "harmonic", "top_fraction": 0.25, "scale_by_tile_score": True, "seed_states": True,
            "logit_scale": None}
    inputs = tuple(plan.hashes[s] for s in ("tiles", "clip_image", "clip_text", "clipseg")) + (
        plan.fused_hash("harmonic"),
    )
    assert AggregateConfig().hash_view() == view
    assert plan.aggregate_hash(AggregateConfig()) == stage_hash("aggregate", view, None, inputs)


def test_a_field_a_mode_ignores_cannot_be_set():
    assert AggregateConfig.from_fields(mode="mutual", shots=2) == AggregateConfig(patch=Mutual())
    assert AggregateConfig.from_fields(combine="patch") == AggregateConfig()  # zero-shot ignores combine
    assert AggregateConfig.from_fields(mode="few-shot", neighbourhood=None).patch.neighbourhood == 1
    with pytest.raises(TypeError):
        Mutual(shots=2)
    with pytest.raises(TypeError, match="patch must be"):
        AggregateConfig(patch="few-shot")
    with pytest.raises(ValueError, match="no field"):
        AggregateConfig.from_fields(shotz=2)
    for bad, msg in ((dict(neighbourhood=2), "odd whole number"), (dict(shots=-1), ">= 0"),
                     (dict(combine="max"), "'mean'"), (dict(shots=True), "whole number")):
        with pytest.raises(ValueError, match=msg):
            FewShot(**bad)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        Mutual(mutual_fraction=0)


@pytest.mark.parametrize("agg", [AggregateConfig(), AggregateConfig(patch=FewShot(shots=2, reference="r")),
                                 AggregateConfig(fusion="geometric", logit_scale=1 / 0.07, patch=Mutual())])
def test_records_round_trip_flat_and_nested(agg):
    rec = to_jsonable(agg)
    assert set(rec) == {"fusion", "top_fraction", "scale_by_tile_score", "seed_states", "logit_scale", "mode",
                        "combine", "neighbourhood", "mutual_fraction", "shots", "shot_seed", "reference"}
    assert config_from_dict(AggregateConfig, rec) == agg
    nested = {**{f: getattr(agg, f) for f in ("fusion", "top_fraction")},
              "patch": None if agg.patch is None else {"mode": agg.mode, **dataclasses.asdict(agg.patch)}}
    assert AggregateConfig.from_json(nested) == dataclasses.replace(agg, scale_by_tile_score=True, seed_states=True,
                                                                    logit_scale=None)
    cfg = dataclasses.replace(PipelineConfig.tiny(), aggregate=agg)
    assert config_from_dict(PipelineConfig, to_jsonable(cfg)) == cfg


def test_a_record_of_the_flat_era_reads_back():
    old = {"fusion": "harmonic", "top_fraction": 0.25, "scale_by_tile_score": True, "seed_states": True,
           "logit_scale": None, "mode": "few-shot", "combine": "patch", "neighbourhood": 1, "mutual_fraction": 0.3,
           "shots": 2, "shot_seed": 1, "reference": ""}
    assert AggregateConfig.from_json(old) == AggregateConfig(patch=FewShot(shots=2, shot_seed=1, combine="patch"))


def test_grammar_modes_dedupe_and_labels():
    vs = variant_grid("mode=zero-shot,few-shot,mutual;combine=mean,patch")
    assert len(vs) == 5  # zero-shot ignores combine: once
    labels = [label(v) for v in vs]
    assert labels[0] == "harmonic/top0.25/scaled/seed-prompts"
    assert "harmonic/top0.25/scaled/seed-prompts/few-shot4/patch/r1" in labels
    assert "harmonic/top0.25/scaled/seed-prompts/mutual0.3/mean/r3" in labels
    assert label(AggregateConfig(patch=FewShot(shots=0, reference="ref", shot_seed=2))) == \
        "harmonic/top0.25/scaled/seed-prompts/few-shotall@refs2/mean/r1"
    assert [v.patch.shots for v in variant_grid("mode=few-shot;shots=1,2,4")] == [1, 2, 4]
    assert len(variant_grid("mode=mutual;shots=1,2")) == 1  # mutual ignores shots
    for spec, msg in (("mode=fewshot", "takes one of"), ("shots=two", "whole number"),
                      ("mode=mutual;neighbourhood=2", "odd whole number"), ("mutual_fraction=0", r"\(0, 1\]"),
                      ("top_fraction", "no values"), ("colour=red", "unknown aggregation field"),
                      ("seed_states=yes", "true or false"), ("logit_scale=big", "clip, winclip")):
        with pytest.raises(ValueError, match=msg):
            variant_grid(spec)


def test_shots_merge_at_the_axis_level():
    assert with_shots(parse_axes("seed"), shots=4, seed=None) == {"mode": ("few-shot",), "shots": (4,)}
    axes = with_shots(parse_axes("mode=zero-shot,few-shot"), shots=2, seed=1)
    assert axes == {"mode": ("zero-shot", "few-shot"), "shots": (2,), "shot_seed": (1,)}
    assert [v.mode for v in expand(axes)] == ["zero-shot", "few-shot"]
    assert with_shots(parse_axes("fusion=harmonic"), shots=None, seed=None) == {"fusion": ("harmonic",)}
    for spec, msg in (("grid", "extend a sweep"), ("mode=few-shot;shots=2", "already names shots"),
                      ("mode=mutual", "no mode that takes references")):
        with pytest.raises(ValueError, match=msg):
            with_shots(parse_axes(spec), shots=2, seed=None)


@pytest.mark.parametrize("spec", ["seed", "grid", "logit_scale=clip,winclip,50;seed_states=false",
                                  "mode=few-shot,mutual;shots=0,2;reference=visa-ref;mutual_fraction=0.5"])
def test_axes_written_back_read_the_same(spec):
    axes = parse_axes(spec)
    assert parse_axes(format_axes(axes)) == axes
    assert expand(parse_axes(format_axes(axes))) == variant_grid(spec)
    assert parse_axes("grid") == GRID


def test_a_new_patch_field_keeps_the_hashes_of_variants_at_its_default():
    """What adding a field to ``FewShot`` does (simulated by a subclass): one declaration, the
    sweep grammar knows it, and only variants that move it off its default get new hashes."""
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class FewShotPlus(FewShot):
        memory_limit: int = 0

    plus, plain = AggregateConfig(patch=FewShotPlus()), AggregateConfig(patch=FewShot())
    assert plus.hash_view() == plain.hash_view()
    assert AggregateConfig(patch=FewShotPlus(memory_limit=5)).hash_view() == {**plain.hash_view(), "memory_limit": 5}
    assert plus.record()["memory_limit"] == 0


STAGE_PINNED = {  # the tiny config's stage hashes, computed before the stages were declared in zsad/stages.py
    "image": "09a857d8421473c5", "isnet": "c47bf7b7d29d1297", "sam": "a0e55a9ce2d3e201",
    "foreground": "240b93fb217f8ddd", "tiles": "c923dba5ff75b8e1", "clip_image": "2b3fe4478121011f",
    "clip_text": "1ca9072e214ffe97", "clipseg": "de990a978f221366", "clip_patch": "071ffc7624434c30",
}


OPT_IN = ("musc_tokens", "dino_tokens")  # pinned by the tests of their configs


def test_stage_hashes_are_pinned():
    from zsad.variants import Mutual
    plan = plan_stages(PipelineConfig.tiny())
    assert {k: v for k, v in plan.hashes.items() if k not in OPT_IN} == STAGE_PINNED  # the opt-in ones: below
    assert (plan.fused_hash("harmonic"), plan.fused_hash("geometric")) == ("ffb18921dcc33371", "a0f4c8c277643580")
    assert plan.mutual_hash(Mutual(mutual_fraction=0.3, neighbourhood=3)) == "74d44b8c7a7488bf"
    assert plan.memory_hash({"shots": 4, "shot_seed": 0, "reference": None}) == "0d0fe601bd72d22a"


def test_musc_hashes_are_pinned_and_leave_the_others_alone():
    """MuSc's stages and variants (the musc-tiny config); the stages every other variant reads keep
    their hashes when MuSc's tokens are switched on."""
    from zsad.flows.configs import load_pipeline_config
    plan = plan_stages(load_pipeline_config("musc-tiny"))
    assert {k: v for k, v in plan.hashes.items() if k not in OPT_IN} == STAGE_PINNED
    assert plan.hashes["musc_tokens"] == "741d99f8928d3345"
    assert (plan.musc_hash(1, None), plan.musc_hash(3, 0)) == ("f9bcb5a829da8a72", "270336ca85d83e5b")
    hashes = [plan.aggregate_hash(a) for a in
              variant_grid("mode=musc;r_list=1-3-5,1-3;rscin=true,false;combine=patch,mean;foreground=none,restrict")]
    assert len(set(hashes)) == 16 and hashes[0] == "49e86dd5805a98c8"
    assert hashlib.sha256(" ".join(hashes).encode()).hexdigest()[:16] == "5ebcefb699b6f48c"
    # MuSc alone reads only its tokens: a change to the seed's stages leaves its hash as it is
    assert set(plan.aggregate_inputs(variant_grid("mode=musc")[0])) == {"musc_tokens"}


def test_dino_hashes_are_pinned_and_leave_the_others_alone():
    """AnomalyDINO's tokens (dino-tiny) and MuSc's on a DINOv2 tower (musc-dino-tiny): new hashes
    of their own; every other stage, MuSc's CLIP tokens and MuSc's variants keep theirs."""
    from zsad.flows.configs import load_pipeline_config
    plan = plan_stages(load_pipeline_config("dino-tiny"))
    assert {k: v for k, v in plan.hashes.items() if k not in OPT_IN} == STAGE_PINNED
    assert (plan.hashes["musc_tokens"], plan.hashes["dino_tokens"]) == ("741d99f8928d3345", "c05eb659fbc51ea8")
    assert plan.aggregate_hash(variant_grid("mode=musc")[0]) == "49e86dd5805a98c8"
    hashes = [plan.aggregate_hash(a) for a in
              variant_grid("mode=anomalydino,anomalydino-batched;masking=official,on;shots=1,2")]
    assert len(set(hashes)) == 6 and hashes[0] == "751eeb1f2f6bfd1a"  # batched ignores shots: 2 + 4
    assert hashlib.sha256(" ".join(hashes).encode()).hexdigest()[:16] == "7eb31a1f88045c92"
    assert set(plan.aggregate_inputs(variant_grid("mode=anomalydino")[0])) == {"dino_tokens"}
    assert plan_stages(load_pipeline_config("musc-dino-tiny")).hashes["musc_tokens"] == "563c74d3ecbd030f"

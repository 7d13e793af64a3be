"""The stage declaration (``zsad/stages.py``) is what the plan, the schema, the key grammar, the
shard and the prune order read."""

from __future__ import annotations

import dataclasses

import pytest

from zsad.config import PipelineConfig, stage_hash
from zsad.stages import LATER_STAGES, STAGE, STAGES, Stage, stage


def test_declared_in_dependency_order_with_known_inputs_and_models():
    seen: set[str] = set()
    for s in STAGES:
        assert set(s.inputs) <= seen, f"{s.name} reads {set(s.inputs) - seen}, declared after it"
        assert s.kind in ("precompute", "derived", "record") and s.per in ("image", "class")
        assert s.model in (None, "isnet", "sam", "clip", "clipseg", "musc", "anomalydino")
        assert (s.model is None) == (s.kind != "precompute" or s.name in ("image", "foreground", "tiles"))
        seen.add(s.name)
    assert len(seen) == len(STAGES)


def test_the_plan_reads_inputs_models_and_order_from_the_declaration(monkeypatch):
    from zsad.tasks import plan as plan_mod
    tiny = PipelineConfig.tiny()
    plan = plan_mod.plan_stages(tiny)
    assert plan.stages() == ("image", "isnet", "sam", "foreground", "tiles", "clip_image", "clip_text", "clipseg")
    assert dataclasses.replace(plan, opted=frozenset({"patches"})).stages()[:7] == plan.stages()[:6] + ("clip_patch",)
    assert dataclasses.replace(plan, opted=frozenset({"musc"})).stages() == plan.stages() + ("musc_tokens",)
    for s in plan_mod.HASHED_STAGES:
        assert plan.inputs[s.name] == {d: plan.hashes[d] for d in s.inputs}
        assert plan.hashes[s.name] == stage_hash(s.name, plan.configs[s.name], plan.weights[s.name],
                                                 tuple(plan.inputs[s.name].values()))
    # a stage that reads one more input gets another hash, and so do the stages that read it
    changed = tuple(dataclasses.replace(s, inputs=s.inputs + ("image",)) if s.name == "tiles" else s
                    for s in plan_mod.HASHED_STAGES)
    monkeypatch.setattr(plan_mod, "HASHED_STAGES", changed)
    other = plan_mod.plan_stages(tiny)
    assert other.inputs["tiles"] == {"foreground": plan.hashes["foreground"], "image": plan.hashes["image"]}
    differ = {k for k in plan.hashes if plan.hashes[k] != other.hashes[k]}
    assert differ == {"tiles", "clip_image", "clip_patch", "clipseg"}


def test_schema_keys_and_versions_come_from_the_declaration():
    from zsad.config import STAGE_VERSIONS
    from zsad.stores.keys import stage_root
    from zsad.stores.schema import STAGE_ARRAYS, dims
    assert STAGE_ARRAYS == {s.name: s.arrays for s in STAGES}
    assert STAGE_VERSIONS == {s.name: s.version for s in STAGES}
    assert dims("foreground", "kept_n") == ("mask",)
    with pytest.raises(ValueError, match=r"unknown stage 'tokens'.*zsad/stages.py"):
        stage_root("tokens", "ab12")
    with pytest.raises(ValueError, match="unknown stage 'tokens'"):
        stage_hash("tokens", {})
    assert stage("sam") is STAGE["sam"]


def test_the_shard_runs_the_declared_per_image_stages_in_order():
    from zsad.tasks import shard
    assert shard.SHARD_STAGES == ("isnet", "sam", "foreground", "tiles", "clip_image", "clipseg", "musc_tokens",
                                  "dino_tokens")
    assert shard.IMAGE_STAGES == tuple(shard.STAGE_TASKS[n] for n in shard.SHARD_STAGES)


def test_prune_order_is_the_declaration_order_after_precompute():
    assert LATER_STAGES == ("fused", "memory", "mutual", "musc", "aggregate", "thresholds", "errors")


def test_a_stage_is_a_frozen_record():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STAGE["sam"].version = 2  # type: ignore[misc]
    assert Stage("x", 1, "derived").arrays == {}


def test_no_key_grammar_outside_stores_keys():
    """Keys are built and read by ``zsad.stores.keys`` only: no ``split("/")`` of a unit path and
    no f-string joining names with ``/`` in the floors above the store (docstrings aside)."""
    import io
    import tokenize
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    allowed = {("flows/demo.py", 'f"{unit.class_name}/{unit.image_id}: score {score:.3f}"')}  # a panel title
    found = []
    for folder in ("flows", "tasks"):
        for path in sorted((root / folder).glob("*.py")):
            rel = path.relative_to(root).as_posix()
            toks = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
            for i, tok in enumerate(toks):
                text = tok.string
                if tok.type == tokenize.STRING and text[:1] in "fF" and "}/{" in text and (rel, text) not in allowed:
                    found.append((rel, tok.start[0], text))
                if text == "split" and i + 2 < len(toks) and toks[i + 2].string in ('"/"', "'/'"):
                    found.append((rel, tok.start[0], "split('/')"))
    assert not found, found

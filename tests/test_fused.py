"""The derived ``fused`` stage: invalidation by its inputs and dtype, a kill mid-write, and
``precompute --fusions``."""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from procs import spawned
from units import visa_store

ROOT = Path(__file__).resolve().parents[1]


def test_fused_stage_invalidation(tmp_path):
    """Made once by the first aggregation that needs it; another aggregation variant reads it
    (nothing fused is written again); a CLIPSeg change (here its map dtype) names another
    fused stage, so stale maps are never read."""
    import dataclasses
    import json

    from zsad.flows.aggregate import run_variants
    from zsad.stores import StageStore
    from zsad.tasks.plan import plan_stages
    from zsad.config import PipelineConfig, to_jsonable
    store = visa_store(tmp_path, 4)
    plan = plan_stages(PipelineConfig.tiny())
    fused = lambda: sorted(Path(store).glob("fused/*/visa/capsules/test/*/zarr.json"))  # noqa: E731
    run_variants(AggregateRequest(store=store, dataset="visa", config="tiny", variants="seed"))
    first = {p: p.stat().st_mtime_ns for p in fused()}
    assert len(first) == 4 and all(f"fused/{plan.fused_hash('harmonic')}/" in str(p) for p in first)
    run_variants(
        AggregateRequest(
            store=store,
            dataset="visa",
            config="tiny",
            variants="top_fraction=0.5,1;scale_by_tile_score=true,false;seed_states=false",
        )
    )
    assert {p: p.stat().st_mtime_ns for p in fused()} == first  # aggregation changes recompute no fused map
    run_variants(
        AggregateRequest(store=store, dataset="visa", config="tiny", variants="fusion=geometric", read_only=True)
    )
    assert len(fused()) == 4  # a read-only run computes the new fusion in memory, writes nothing
    run_variants(
        AggregateRequest(store=store, dataset="visa", config="tiny", variants="seed")
    )  # unchanged inputs: nothing to redo
    assert {p: p.stat().st_mtime_ns for p in fused()} == first
    # a CLIPSeg change (its map dtype here): a new CLIPSeg hash, so new fused units; the old ones stay
    import shutil
    other = dataclasses.replace(PipelineConfig.tiny(), map_dtype="float16")
    other_plan, other_cfg = plan_stages(other), tmp_path / "other.json"
    other_cfg.write_text(json.dumps(to_jsonable(other)))
    assert other_plan.hashes["clipseg"] != plan.hashes["clipseg"] and \
        other_plan.fused_hash("harmonic") != plan.fused_hash("harmonic")
    shutil.copytree(
        Path(store) / "clipseg" / plan.hashes["clipseg"], Path(store) / "clipseg" / other_plan.hashes["clipseg"]
    )
    run_variants(AggregateRequest(store=store, dataset="visa", config=str(other_cfg), variants="seed"))
    assert len(fused()) == 8 and {p: p.stat().st_mtime_ns for p in fused() if p in first} == first
    assert StageStore(store).is_complete(f"fused/{other_plan.fused_hash('harmonic')}/visa/capsules/test/00003")
    cfg = tmp_path / "f32.json"
    cfg.write_text(json.dumps(to_jsonable(dataclasses.replace(PipelineConfig.tiny(), fused_dtype="float32"))))
    run_variants(
        AggregateRequest(store=store, dataset="visa", config=str(cfg), variants="seed")
    )  # the cache's dtype is part of its hash
    assert len(fused()) == 12 and StageStore(store).is_complete(
        f"fused/{plan_stages(dataclasses.replace(PipelineConfig.tiny(), fused_dtype='float32')).fused_hash('harmonic')}"
        "/visa/capsules/test/00000")


@pytest.mark.slow
def test_kill_9_while_fused_units_are_written(tmp_path):
    """A build killed mid-way leaves only complete fused units (each equal to a clean build's);
    a rerun writes exactly the missing ones and leaves no temp folder."""
    from zsad.stores import StageStore, Unit
    from zsad.tasks.fused import FUSED, build_fused
    from zsad.tasks.plan import plan_stages
    from zsad.config import PipelineConfig
    store = visa_store(tmp_path, 24)
    code = (
        "import sys; sys.path.insert(0, %r)\nfrom zsad.stores import StageStore, Unit\nfrom zsad.tasks.fused import build_fused\n"
        "from zsad.tasks.plan import plan_stages\nfrom zsad.config import PipelineConfig\n"
        "build_fused(StageStore(%r), plan_stages(PipelineConfig.tiny()), "
        "[Unit('visa', 'capsules', 'test', f'{i:05d}') for i in range(24)], ('harmonic', 'geometric'))"
        % (str(ROOT), store)
    )
    with spawned([sys.executable, "-c", code], cwd=str(ROOT)):
        deadline = time.time() + 120
        while time.time() < deadline and len(list(Path(store).glob("fused/*/visa/capsules/test/*"))) < 6:
            time.sleep(0.05)
    # leaving ``spawned``: kill -9
    st, plan = StageStore(store), plan_stages(PipelineConfig.tiny())
    units = [Unit("visa", "capsules", "test", f"{i:05d}") for i in range(24)]
    done = [(u, f) for u in units for f in ("harmonic", "geometric")
            if st.is_complete(f"fused/{plan.fused_hash(f)}/{u.path}")]
    assert 0 < len(done) < 48, "the kill must land mid-build"
    st.sweep_temps()
    written = build_fused(st, plan, units, ("harmonic", "geometric"))
    assert written == 48 - len(done)
    assert build_fused(st, plan, units, ("harmonic", "geometric")) == 0
    clean = StageStore(tmp_path / "clean.zarr")
    for u, f in done[:6]:
        key = f"fused/{plan.fused_hash(f)}/{u.path}"
        arrays, attrs = st.read_unit(key)
        from zsad.tasks.fused import ImageFacts, compute_fused
        facts = ImageFacts.from_attrs(st.read_attrs(f"image/{plan.hashes['image']}/{u.path}"))
        again, _, _ = compute_fused(st.read_only_view(), plan, u, [f], facts)  # recomputed, not written
        assert np.array_equal(arrays[FUSED], again[f]) and attrs["sha256"] == facts.sha256
    assert not list(Path(store).rglob(".tmp-*")) and clean is not None


@pytest.mark.slow
def test_precompute_fusions_builds_the_fused_stage(synthetic_root, tmp_path):
    """``zsad precompute --fusions`` writes the fused maps; a later aggregation writes none."""
    from zsad.flows.aggregate import run_variants
    from zsad.flows.cli import main
    store = str(tmp_path / "s.zarr")
    assert main(["precompute", "--root", str(synthetic_root), "--store", store, "--fusions", "harmonic,geometric"]) == 0
    fused = lambda: {p: p.stat().st_mtime_ns for p in Path(store).glob("fused/*/synthetic/*/*/*/zarr.json")}  # noqa
    before = fused()
    assert len(before) == 2 * 8
    run_variants(
        AggregateRequest(store=store, dataset="synthetic", config="tiny", variants="fusion=harmonic,geometric")
    )
    assert fused() == before
    with pytest.raises(SystemExit):
        main(["precompute", "--root", str(synthetic_root), "--store", store, "--fusions", "median"])

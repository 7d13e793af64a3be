"""The store on a real S3-compatible server: moto's standalone server in its own process on
127.0.0.1, reached through s3fs with an explicit endpoint and credentials from the environment."""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest, PrecomputeRequest
import contextlib
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from procs import spawned
from conftest import SECRET  # the s3 and s3_env fixtures live there too
from zsad.stores import StageStore
from zsad.tasks import worker
from units import complete_units
from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig, PipelineConfig

pytestmark = [pytest.mark.slow, pytest.mark.server]
ZSAD = str(Path(sys.executable).with_name("zsad"))
N_UNITS = 8 * 7 + 2  # 8 images x 7 per-image stages + the prompts of 2 classes


def zsad(args: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> dict | str:
    cwd.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([ZSAD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert SECRET not in out.stdout + out.stderr
    assert out.returncode == expect, out.stderr[-3000:]
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return out.stdout


def zsad_here(args: list[str], cwd: Path, monkeypatch) -> dict | str:
    """``zsad(...)`` in this process (the environment is the ``s3_env`` fixture's), with a fresh
    view of the store: nothing this process kept (units, index) answers for it."""
    import contextlib
    import io

    from zsad.flows.cli import main
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    worker.forget_stores()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    worker.forget_stores()
    assert SECRET not in out.getvalue() + err.getvalue()
    assert rc == 0, err.getvalue()[-3000:]
    try:
        return json.loads(out.getvalue())
    except json.JSONDecodeError:
        return out.getvalue()


def test_team_shares_a_bucket(s3, s3_env, synthetic_root, store_copy, tmp_path, monkeypatch):
    """Alice and Bob precompute in processes of their own; the commands after that run in this
    process, each with a fresh view of the store."""
    store = s3.make_bucket("team") + "/zsad.zarr"
    pre = ["precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", store]
    first = zsad(pre, s3_env, tmp_path / "alice")
    assert first["units_written"] == N_UNITS and first["n_done"] == 8
    assert len([u for u in complete_units(store) if u.split("/")[0] != "thresholds"]) == N_UNITS
    # a teammate, elsewhere: everything is cached, nothing computed, the metrics equal a local run's
    second = zsad(pre, s3_env, tmp_path / "bob")
    assert second["units_written"] == 0 and second["models_loaded"] == 0
    here = functools.partial(zsad_here, monkeypatch=monkeypatch)
    (seed_meta,) = here(["aggregate", "--store", store], tmp_path / "alice").values()
    assert seed_meta["written"] == 8
    (again,) = here(["aggregate", "--store", store], tmp_path / "bob").values()
    assert again["written"] == 0 and again["n_images"] == 8  # bob reads alice's scores
    local = store_copy  # the same data precomputed on a local disk (once per session)
    here(["evaluate", "--store", local, "--out", "local-res"], tmp_path / "bob")
    fs = s3.filesystem()
    before = sorted(fs.find("team"))
    here(["evaluate", "--store", store, "--out", "res", "--read-only"], tmp_path / "bob")
    assert sorted(fs.find("team")) == before  # a read-only user can evaluate: not one object written
    assert (tmp_path / "bob" / "res" / "metrics.json").read_text() == \
        (tmp_path / "bob" / "local-res" / "metrics.json").read_text()
    here(["evaluate", "--store", store, "--out", "res"], tmp_path / "bob")  # stores thresholds
    listed = {r["stage"]: r for r in here(["cache", "list", "--store", store], tmp_path / "bob")}
    assert all(listed[s]["units"] == 8 for s in ("image", "isnet", "sam", "foreground", "tiles", "clipseg"))
    assert listed["clip_text"]["units"] == 2 and listed["thresholds"]["units"] == 2 and "_index" not in listed
    size = here(["cache", "size", "--store", store], tmp_path / "bob")
    assert size["total_bytes"] > 0 and all(r["bytes"] > 0 for r in size["by_stage"])
    assert "_index" in {r["stage"] for r in size["by_stage"]}  # the index's records are counted too
    assert here(["cache", "prune", "--store", store, "--keep", "tiny", "--dry-run"], tmp_path)["would_delete"] == []
    seed = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig())
    assert here(["cache", "prune", "--store", store, "--variants", seed], tmp_path)["deleted"] == [f"aggregate/{seed}"]
    assert not fs.exists(f"team/zsad.zarr/aggregate/{seed}/zarr.json")


def test_two_processes_precompute_disjoint_classes_at_once(s3, s3_env, synthetic_root, tmp_path, monkeypatch):
    store = s3.make_bucket("shared") + "/zsad.zarr"
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(spawned([ZSAD, "precompute", "--dataset", "synthetic", "--root",
                                              str(synthetic_root), "--store", store, "--classes", cls], env=s3_env,
                                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for cls in ("pill", "washer")]
        outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert sum(json.loads(o)["units_written"] for o, _ in outs) == N_UNITS
    assert len(complete_units(store)) == N_UNITS
    again = zsad_here(["precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", store,
                       "--verify"], tmp_path, monkeypatch)  # every marker read, not the index: all there
    assert again["units_written"] == 0


def test_a_kill_mid_unit_leaves_nothing_that_reads_as_complete(s3, s3_env, synthetic_root, tmp_path, monkeypatch):
    from zsad.flows.precompute import run_precompute
    from zsad.stores import objectio
    from zsad.datasets import read_dataset
    store = s3.make_bucket("crash") + "/zsad.zarr"
    samples, cfg = read_dataset("synthetic", str(synthetic_root)), PipelineConfig.tiny()
    write, calls = objectio.ObjectUnits.write, []

    def dies_mid_unit(self, key, arrays, attrs):  # from the 12th unit on, the first with arrays: one array
        calls.append(1)                          # lands, then the process "dies" (Ctrl-C; no marker, no index)
        if len(calls) >= 12 and arrays:
            name, (data, dims) = next(iter(arrays.items()))
            write(self, key, {name: (data, dims)}, {**attrs, "complete": False})
            raise KeyboardInterrupt
        return write(self, key, arrays, attrs)

    monkeypatch.setattr(objectio.ObjectUnits, "write", dies_mid_unit)
    with pytest.raises(KeyboardInterrupt):
        run_precompute(PrecomputeRequest(store=store, progress=False, name="synthetic"), samples=samples, cfg=cfg)
    monkeypatch.setattr(objectio.ObjectUnits, "write", write)
    worker.forget_stores()
    done_before = complete_units(store)
    assert 0 < len(done_before) < N_UNITS
    st = StageStore(store)
    indexed = {f"{stage}/{h}/{path}" for stage, h, _ in st.stages() for ds in ("synthetic",)
               for path in st.index.entries(stage, h, ds)}
    assert indexed <= done_before  # the index never names a unit that is not complete
    worker.forget_stores()
    out = run_precompute(PrecomputeRequest(store=store, progress=False, name="synthetic"), samples=samples, cfg=cfg)
    assert out.failed == () and len(complete_units(store)) == N_UNITS
    assert out.units_written == N_UNITS - len(done_before)  # the half unit among them
    # and a real kill -9 of a CLI run, mid-run: the same invariant
    store2 = s3.make_bucket("crash2") + "/zsad.zarr"
    args = [ZSAD, "precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", store2]
    with spawned(args, env=s3_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        time.sleep(8.0)  # then kill -9, with whatever it started
    complete_units(store2)  # every complete unit reads whole
    assert zsad(args[1:], s3_env, tmp_path)["n_done"] == 8
    assert len(complete_units(store2)) == N_UNITS


def test_storage_options_errors_do_not_echo_secrets(tmp_path, monkeypatch, capsys):
    from zsad.flows.cli import main
    with pytest.raises(SystemExit):
        main(["cache", "list", "--store", "s3://b/x.zarr", "--storage-options", '{"secret": "hunter2"}'])
    assert "credentials do not belong on a command line" in capsys.readouterr().err
    monkeypatch.setenv("ZSAD_STORAGE_OPTIONS", '{"endpoint_url": "http://x", "key": "hunter2"')
    assert main(["cache", "list", "--store", "s3://b/x.zarr"]) == 2
    err = capsys.readouterr().err
    assert "ZSAD_STORAGE_OPTIONS is not valid JSON" in err and "hunter2" not in err


def test_a_unit_rewritten_in_place_never_reads_mixed(s3, s3_env):
    """No existence check before a write: an overlapping writer rewrites the unit in place; a
    rewrite cut off after a chunk landed reads as incomplete (CRC-32 per chunk), never mixed."""
    import numpy as np
    from zarr.core.sync import sync

    from zsad.stores.layout import encode_array
    store, key = s3.make_bucket("overlap") + "/zsad.zarr", "tiles/h/synthetic/pill/test/x"
    alice, bob = StageStore(store), StageStore(store)
    alice.write_unit(key, {"v": (np.arange(3), ("t",)), "w": (np.ones(2), ("u",))}, source="sha-1")
    reader = StageStore(store)
    assert (reader.read_array(key, "v") == np.arange(3)).all() and reader.verify_unit(key)
    spec, chunk = encode_array(np.zeros(3, np.int64), ("t",))  # bob's first chunk lands, then bob dies
    sync(bob.backend.objects.fs._pipe_file(f"{bob.backend.objects.root}/{key}/v/{spec.chunk_key}", chunk))
    fresh = StageStore(store)
    assert fresh.is_complete(key, "sha-1")  # the marker is alice's...
    assert fresh.read_complete(key, ("v", "w")) is None and not fresh.verify_unit(key)  # ...the chunks disagree
    with pytest.raises(ValueError, match="missing or incomplete"):
        fresh.read_array(key, "v")
    bob.write_unit(key, {"v": (np.zeros(3, int), ("t",)), "w": (np.zeros(2), ("u",))}, source="sha-1")
    again = StageStore(store)
    assert (again.read_array(key, "v") == 0).all() and (again.read_array(key, "w") == 0).all()
    assert again.verify_unit(key)


@pytest.mark.slow
def test_a_misbehaving_object_store_still_gives_the_clean_store(s3, s3_env, synthetic_root, store_copy, monkeypatch,
                                                                tmp_path):
    """5 % of requests answered 503 SlowDown or cut after the server acted: every request is
    retried with backoff, the run completes, and the store equals a clean run's (the session's
    store, on a local disk), unit for unit."""
    from zsad.flows.aggregate import run_variants
    from zsad.flows.precompute import run_precompute
    from s3proxy import S3Proxy
    from units import unit_arrays
    from zsad.datasets import read_dataset
    samples, cfg = read_dataset("synthetic", str(synthetic_root)), PipelineConfig.tiny()
    clean = store_copy
    run_variants(AggregateRequest(store=clean, dataset="synthetic", config="tiny", variants="seed"))
    with S3Proxy(s3.endpoint_url, fault_rate=0.05, seed=7) as proxy:
        monkeypatch.setenv("ZSAD_STORAGE_OPTIONS", json.dumps({"endpoint_url": proxy.endpoint_url}))
        worker.forget_stores()
        faulty = s3.make_bucket("faulty") + "/zsad.zarr"
        out = run_precompute(
            PrecomputeRequest(store=faulty, progress=False, name="synthetic"), samples=samples, cfg=cfg
        )
        run_variants(AggregateRequest(store=faulty, dataset="synthetic", config="tiny", variants="seed"))
        assert out.failed == () and proxy.faults > 20  # faults there were, and none surfaced
    monkeypatch.setenv("ZSAD_STORAGE_OPTIONS", json.dumps(s3.storage_options()))
    worker.forget_stores()
    units = complete_units(clean)
    assert {k.split("/", 1)[1] for k in units} and units == complete_units(faulty)
    a, b = unit_arrays(clean, units), unit_arrays(faulty, units)
    for key in units:
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key}/{name}")
    agg = [k for k in units if k.startswith("aggregate/")]
    assert len(agg) == 8 and all(StageStore(clean).read_attrs(k)["sample_score"] ==
                                 StageStore(faulty).read_attrs(k)["sample_score"] for k in agg)


@pytest.mark.slow
def test_a_unit_that_cannot_be_written_fails_its_image_only(s3, s3_env, synthetic_root, monkeypatch):
    """A write that keeps failing (retries exhausted) is that image's recorded failure; its unit
    never reads as complete; the other images go on; the rerun completes it."""
    from zsad.flows.precompute import run_precompute
    from zsad.stores import objectio
    from zsad.datasets import read_dataset
    samples, cfg = read_dataset("synthetic", str(synthetic_root)), PipelineConfig.tiny()
    store, victim = s3.make_bucket("unwritable") + "/zsad.zarr", samples[2]
    write = objectio.ObjectUnits.write

    def fails_for_victim(self, key, arrays, attrs):
        if key.startswith("sam/") and key.endswith(f"/{victim.image_id}") and f"/{victim.class_name}/" in key:
            write(self, key, dict(list(arrays.items())[:1]), {**attrs, "complete": False})  # part of it landed
            raise OSError("SlowDown: retries exhausted")
        return write(self, key, arrays, attrs)

    monkeypatch.setattr(objectio.ObjectUnits, "write", fails_for_victim)
    out = run_precompute(PrecomputeRequest(store=store, progress=False, name="synthetic"), samples=samples, cfg=cfg)
    assert [(f.path, f.stage) for f in out.failed] == [(victim.path, "sam")]
    assert "retries exhausted" in out.failed[0].error and len(out.done) == 7
    key = f"sam/{plan_stages(cfg).hashes['sam']}/synthetic/{victim.class_name}/test/{victim.image_id}"
    assert not StageStore(store).is_complete(key)
    monkeypatch.setattr(objectio.ObjectUnits, "write", write)
    worker.forget_stores()
    again = run_precompute(PrecomputeRequest(store=store, progress=False, name="synthetic"), samples=samples, cfg=cfg)
    assert again.failed == () and len(again.done) == 8 and StageStore(store).is_complete(key)


def test_units_written_as_few_objects_read_back_everywhere(s3, s3_env):
    """One unit = per array its zarr.json and one chunk, then the group's zarr.json (marker, with
    the arrays' metadata inline): 2 x arrays + 1 PUTs; zarr-python and xarray read it as Zarr v3."""
    import xarray as xr
    import zarr

    from s3proxy import S3Proxy
    arrays = {"maps_tlhw": (np.random.default_rng(0).random((2, 3, 40, 40)).astype(np.float16),
                            ("tile", "prompt", "y", "x")),
              "kept_n": (np.array([True, False, True]), ("mask",)),
              "prompt": (np.array(["a tear", "a rip", "ünïcode"]), ("prompt",)),
              "count": (np.array([7], np.int64), ("one",))}
    with S3Proxy(s3.endpoint_url) as proxy:
        st = StageStore(s3.make_bucket("objects") + "/zsad.zarr", {"endpoint_url": proxy.endpoint_url})
        st.ensure_stage("clipseg", "h", {}, {})
        key = "clipseg/h/synthetic/pill/test/x"
        st.write_unit(key, {"warm": (np.zeros(1), ("one",))}, source="s")  # the parents exist now
        proxy.reset()
        st.write_unit(key, arrays, {"note": 1}, source="sha")
        assert proxy.counts() == {"PUT": 2 * len(arrays) + 1}
        fresh = StageStore(st.url, {"endpoint_url": proxy.endpoint_url})
        fresh.index.entries("clipseg", "h", "synthetic")  # a run reads the index once (nothing there yet)
        proxy.reset()
        got, attrs = fresh.read_complete(key, tuple(arrays), "sha")
        assert proxy.counts() == {"GET": 1 + len(arrays)}  # the marker, then one chunk per array
    assert attrs["note"] == 1 and attrs["complete"] is True
    group = zarr.open_group(st.url, path=key, mode="r", storage_options=s3.storage_options())
    ds = xr.open_zarr(st.url, group=key, consolidated=False, zarr_format=3,
                      storage_options=s3.storage_options())
    for name, (data, dims) in arrays.items():
        for value in (got[name], group[name][...], ds[name].values):
            assert value.tolist() == data.tolist(), name
        assert ds[name].dims == dims

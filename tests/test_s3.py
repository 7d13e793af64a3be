"""The store on a real S3-compatible server: moto's standalone server in its own process on
127.0.0.1, reached through s3fs with an explicit endpoint and credentials from the environment."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stores import StageStore
from tasks import runtime
from tasks.plan import plan_stages
from zsad.config import AggregateConfig, PipelineConfig

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("moto", "flask", "s3fs")),
                                reason="moto[server] and s3fs (the test extra) are not installed")
ZSAD = str(Path(sys.executable).with_name("zsad"))
SECRET = "zsad-test-secret-must-not-be-printed"
N_UNITS = 8 * 7 + 2  # 8 images x 7 per-image stages + the prompts of 2 classes


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from stores.s3server import LocalS3
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        server = LocalS3(log=log).__enter__()
    except RuntimeError as exc:
        pytest.skip(f"{exc}; log: {log.read_text()[-2000:] if log.exists() else ''}")
    yield server
    server.__exit__()


@pytest.fixture()
def s3_env(s3, monkeypatch):
    """This process and its children reach the server the way a teammate would."""
    env = s3.env()
    env["AWS_SECRET_ACCESS_KEY"] = SECRET  # moto accepts any; checked absent from every output
    for k, v in env.items():
        if k.startswith(("AWS_", "ZSAD_STORAGE")):
            monkeypatch.setenv(k, v)
    runtime.forget_stores()
    yield env
    runtime.forget_stores()


def zsad(args: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> dict | str:
    cwd.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([ZSAD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert SECRET not in out.stdout + out.stderr
    assert out.returncode == expect, out.stderr[-3000:]
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return out.stdout


def complete_units(store: str) -> set[str]:
    """Every unit that reads as complete, each read whole (arrays and all) to prove it."""
    st, found = StageStore(store), set()
    for stage, h, _ in st.stages():
        stack = [f"{stage}/{h}"]
        while stack:
            key = stack.pop()
            if st.is_complete(key):
                st.read_unit(key)
                found.add(key)
            elif key.count("/") < 6:
                stack += [f"{key}/{c}" for c in st.children(key)]
    return found


def test_team_shares_a_bucket(s3, s3_env, synthetic_root, tmp_path):
    store = s3.make_bucket("team") + "/zsad.zarr"
    pre = ["precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", store]
    first = zsad(pre, s3_env, tmp_path / "alice")
    assert first["units_written"] == N_UNITS and first["n_done"] == 8
    assert len([u for u in complete_units(store) if u.split("/")[0] != "thresholds"]) == N_UNITS
    # a teammate, elsewhere: everything is cached, nothing computed, the metrics equal a local run's
    second = zsad(pre, s3_env, tmp_path / "bob")
    assert second["units_written"] == 0 and second["models_loaded"] == 0
    (seed_meta,) = zsad(["aggregate", "--store", store], s3_env, tmp_path / "alice").values()
    assert seed_meta["written"] == 8
    (again,) = zsad(["aggregate", "--store", store], s3_env, tmp_path / "bob").values()
    assert again["written"] == 0 and again["n_images"] == 8  # bob reads alice's scores
    local = str(tmp_path / "local.zarr")
    zsad(["precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", local], s3_env,
         tmp_path / "bob")
    zsad(["evaluate", "--store", local, "--out", "local-res"], s3_env, tmp_path / "bob")
    fs = s3.filesystem()
    before = sorted(fs.find("team"))
    zsad(["evaluate", "--store", store, "--out", "res", "--read-only"], s3_env, tmp_path / "bob")
    assert sorted(fs.find("team")) == before  # a read-only user can evaluate: not one object written
    assert (tmp_path / "bob" / "res" / "metrics.json").read_text() == \
        (tmp_path / "bob" / "local-res" / "metrics.json").read_text()
    zsad(["evaluate", "--store", store, "--out", "res"], s3_env, tmp_path / "bob")  # stores thresholds
    listed = {r["stage"]: r for r in zsad(["cache", "list", "--store", store], s3_env, tmp_path / "bob")}
    assert all(listed[s]["units"] == 8 for s in ("image", "isnet", "sam", "foreground", "tiles", "clipseg"))
    assert listed["clip_text"]["units"] == 2 and listed["thresholds"]["units"] == 2 and "_index" not in listed
    size = zsad(["cache", "size", "--store", store], s3_env, tmp_path / "bob")
    assert size["total_bytes"] > 0 and all(r["bytes"] > 0 for r in size["by_stage"])
    assert "_index" in {r["stage"] for r in size["by_stage"]}  # the index's records are counted too
    assert zsad(["cache", "prune", "--store", store, "--keep", "tiny", "--dry-run"], s3_env, tmp_path)[
        "would_delete"] == []
    seed = plan_stages(PipelineConfig.tiny()).aggregate_hash(AggregateConfig())
    assert zsad(["cache", "prune", "--store", store, "--variants", seed], s3_env, tmp_path)["deleted"] == \
        [f"aggregate/{seed}"]
    assert not fs.exists(f"team/zsad.zarr/aggregate/{seed}/zarr.json")


def test_two_processes_precompute_disjoint_classes_at_once(s3, s3_env, synthetic_root, tmp_path):
    store = s3.make_bucket("shared") + "/zsad.zarr"
    procs = [subprocess.Popen([ZSAD, "precompute", "--dataset", "synthetic", "--root", str(synthetic_root),
                               "--store", store, "--classes", cls], env=s3_env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cls in ("pill", "washer")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert sum(json.loads(o)["units_written"] for o, _ in outs) == N_UNITS
    assert len(complete_units(store)) == N_UNITS
    again = zsad(["precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", store,
                  "--verify"], s3_env, tmp_path)  # every marker read, not the index: all there
    assert again["units_written"] == 0


def test_a_kill_mid_unit_leaves_nothing_that_reads_as_complete(s3, s3_env, synthetic_root, tmp_path, monkeypatch):
    from flows.precompute import run_precompute
    from stores import zarr_store
    from zsad.datasets import read_dataset
    store = s3.make_bucket("crash") + "/zsad.zarr"
    samples, cfg = read_dataset("synthetic", str(synthetic_root)), PipelineConfig.tiny()
    fill, calls = zarr_store.StageStore._fill, []

    def dies_mid_unit(group, arrays, meta):  # from the 12th unit on, the first with arrays: one array lands, then
        calls.append(1)                      # the process "dies" (Ctrl-C; no marker, no index record)
        if len(calls) >= 12 and arrays:
            name, (data, dims) = next(iter(arrays.items()))
            fill(group, {name: (data, dims)}, {**meta, "complete": False})
            group.attrs["complete"] = False
            raise KeyboardInterrupt
        fill(group, arrays, meta)

    monkeypatch.setattr(zarr_store.StageStore, "_fill", staticmethod(dies_mid_unit))
    with pytest.raises(KeyboardInterrupt):
        run_precompute(samples, "synthetic", store, cfg, progress=False)
    monkeypatch.setattr(zarr_store.StageStore, "_fill", staticmethod(fill))
    done_before = complete_units(store)
    assert 0 < len(done_before) < N_UNITS
    st = StageStore(store)
    indexed = {f"{stage}/{h}/{path}" for stage, h, _ in st.stages() for ds in ("synthetic",)
               for path in st.index.entries(stage, h, ds)}
    assert indexed <= done_before  # the index never names a unit that is not complete
    runtime.forget_stores()
    out = run_precompute(samples, "synthetic", store, cfg, progress=False)
    assert out["failed"] == [] and len(complete_units(store)) == N_UNITS
    assert out["units_written"] == N_UNITS - len(done_before)  # the half unit among them
    # and a real kill -9 of a CLI run, at a few moments: the same invariant
    store2 = s3.make_bucket("crash2") + "/zsad.zarr"
    args = [ZSAD, "precompute", "--dataset", "synthetic", "--root", str(synthetic_root), "--store", store2]
    for after_s in (6.0, 9.0):
        proc = subprocess.Popen(args, env=s3_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(after_s)
        proc.kill()
        proc.wait()
        complete_units(store2)  # every complete unit reads whole
    assert zsad(args[1:], s3_env, tmp_path)["n_done"] == 8
    assert len(complete_units(store2)) == N_UNITS


def test_storage_options_errors_do_not_echo_secrets(tmp_path, monkeypatch, capsys):
    from flows.cli import main
    with pytest.raises(SystemExit):
        main(["cache", "list", "--store", "s3://b/x.zarr", "--storage-options", '{"secret": "hunter2"}'])
    assert "credentials do not belong on a command line" in capsys.readouterr().err
    monkeypatch.setenv("ZSAD_STORAGE_OPTIONS", '{"endpoint_url": "http://x", "key": "hunter2"')
    assert main(["cache", "list", "--store", "s3://b/x.zarr"]) == 2
    err = capsys.readouterr().err
    assert "ZSAD_STORAGE_OPTIONS is not valid JSON" in err and "hunter2" not in err


def test_an_overlapping_writer_keeps_the_unit_another_finished(s3, s3_env):
    import numpy as np
    store, key = s3.make_bucket("overlap") + "/zsad.zarr", "tiles/h/synthetic/pill/test/x"
    alice, bob = StageStore(store), StageStore(store)
    alice.write_unit(key, {"v": (np.arange(3), ("t",))}, source="sha-1")
    bob.write_unit(key, {"v": (np.zeros(3, int), ("t",))}, source="sha-1")  # computed while alice wrote it
    assert bob.writes == 0 and (StageStore(store).read_array(key, "v") == np.arange(3)).all()
    bob.write_unit(key, {"v": (np.zeros(3, int), ("t",))}, source="sha-2")  # the image changed: replaced
    assert bob.writes == 1 and (StageStore(store).read_array(key, "v") == 0).all()
    bob.write_unit(key, {"v": (np.ones(3, int), ("t",))}, source="sha-2", replace=True)  # asked to: replaced
    assert (StageStore(store).read_array(key, "v") == 1).all()

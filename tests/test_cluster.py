"""Precompute, the mutual pass and aggregation on a ``dask.distributed`` cluster of worker
processes over the S3 store (moto's server behind a counting proxy), checked against one
process writing to a local store; a worker killed mid-run; a store the workers cannot see."""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest, PrecomputeRequest
import collections
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from zsad.flows.cluster import check_shared_store, plan_shards
from zsad.flows.configs import load_pipeline_config
from zsad.stores import StageStore
from zsad.tasks import worker
from zsad.tasks.plan import plan_stages
from units import complete_units, unit_arrays
from zsad.config import PipelineConfig
from zsad.datasets import read_dataset

pytestmark = [pytest.mark.slow, pytest.mark.server]

distributed = pytest.importorskip("distributed")
N_IMAGES = 8


@pytest.fixture(scope="module")
def cluster(s3):
    """Two worker processes, one thread each (as ``dask worker --nworkers 2 --nthreads 1``), with
    the S3 credentials and endpoint in their own environment."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40, env=s3.env({})) as c:
        with distributed.Client(c) as client:
            client.wait_for_workers(2, timeout=120)
        yield c


def _point_workers_at(cluster, endpoint_url: str) -> None:
    with distributed.Client(cluster) as client:
        client.run(lambda url: os.environ.__setitem__("ZSAD_STORAGE_OPTIONS", f'{{"endpoint_url": "{url}"}}'),
                   endpoint_url)


@pytest.fixture(scope="module")
def broken_root(synthetic_root, tmp_path_factory):
    """The synthetic set with one image file cut short (its stages must fail alone)."""
    root = tmp_path_factory.mktemp("cluster-data") / "data"
    shutil.copytree(synthetic_root, root)
    victim = Path(read_dataset("synthetic", str(root))[3].path)
    victim.write_bytes(victim.read_bytes()[:100])
    return root, str(victim)


def _unit_puts(log: list[tuple[str, str]], bucket: str) -> collections.Counter:
    """PUTs of unit markers (a unit's group ``zarr.json``) by unit key."""
    out = collections.Counter()
    for method, path in log:
        parts = path.strip("/").split("/")
        depth = 7 if parts[2:3] == ["clip_text"] else 9  # bucket/store/stage/hash/dataset/class[/split/id]/zarr.json
        if method == "PUT" and parts[0] == bucket and parts[-1] == "zarr.json" and len(parts) == depth:
            out["/".join(parts[2:-1])] += 1
    return out


@pytest.mark.slow
def test_precompute_and_mutual_on_a_cluster_equal_one_process(cluster, s3, s3_env, broken_root, tmp_path,
                                                              monkeypatch):
    from zsad.flows.aggregate import run_variants
    from zsad.flows.precompute import run_precompute
    from s3proxy import S3Proxy
    root, victim = broken_root
    samples, cfg = read_dataset("synthetic", str(root)), load_pipeline_config("tiny", patches=True)
    local = str(tmp_path / "local.zarr")
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers (Dask sets OMP_NUM_THREADS=1): the same float sums, bit for bit
    try:
        one = run_precompute(PrecomputeRequest(store=local, progress=False, name="synthetic"), samples=samples, cfg=cfg)
    finally:
        torch.set_num_threads(threads)
    bucket = "cluster"
    with S3Proxy(s3.endpoint_url) as proxy:
        monkeypatch.setenv("ZSAD_STORAGE_OPTIONS", f'{{"endpoint_url": "{proxy.endpoint_url}"}}')
        worker.forget_stores()
        store = s3.make_bucket(bucket) + "/zsad.zarr"
        _point_workers_at(cluster, proxy.endpoint_url)  # the workers take the proxy from their environment
        try:
            out = run_precompute(
                PrecomputeRequest(
                    store=store, progress=False, dask_address=cluster.scheduler_address, name="synthetic"
                ),
                samples=samples,
                cfg=cfg,
            )
        finally:
            _point_workers_at(cluster, s3.endpoint_url)
        puts = _unit_puts(list(proxy.log), bucket)
        # a broken image fails alone, on whichever worker drew it, named by its file
        assert [f.path for f in out.failed] == [str(victim)] == [f.path for f in one.failed]
        assert sorted(out.done) == sorted(one.done) and len(out.done) == N_IMAGES - 1
        # every unit written exactly once, and equal array for array to the one-process run
        units = complete_units(store)
        assert units == complete_units(local)
        assert {k for k in units if not k.startswith("errors/")} <= set(puts)
        assert set(puts.values()) == {1}, {k: n for k, n in puts.items() if n != 1}
        s3_arrays, local_arrays = unit_arrays(store, units), unit_arrays(local, units)
        for key in units:
            for name, arr in local_arrays[key].items():
                np.testing.assert_array_equal(s3_arrays[key][name], arr, err_msg=f"{key}/{name}")
        # each model loaded at most once per worker, and reported per worker
        assert 1 <= len(out.workers) <= 2 and sum(w.images for w in out.workers.values()) == N_IMAGES
        assert all(set(w.models_loaded.values()) <= {1} for w in out.workers.values()), out.workers
        assert out.shards >= 4  # sized for two workers, not one shard per class
        again = run_precompute(
            PrecomputeRequest(store=store, progress=False, dask_address=cluster.scheduler_address, name="synthetic"),
            samples=samples,
            cfg=cfg,
        )
        assert again.units_written == 0 and again.models_loaded == 0
        # the mutual pass and the aggregation on the same cluster equal the local ones
    worker.forget_stores()
    there = run_variants(
        AggregateRequest(
            store=store,
            dataset="synthetic",
            config="tiny",
            variants="mode=mutual",
            dask_address=cluster.scheduler_address,
            evaluate=True,
        )
    )
    here = run_variants(
        AggregateRequest(store=local, dataset="synthetic", config="tiny", variants="mode=mutual", evaluate=True)
    )
    (t,), (h,) = there.values(), here.values()
    assert t.scheduler == "distributed" and t.n_images == h.n_images == N_IMAGES - 1
    for cls, rows in h.rows.items():
        got = {r.unit: r.sample_score for r in t.rows[cls]}
        for r in rows:
            assert got[r.unit] == pytest.approx(r.sample_score, rel=1e-6, abs=1e-9)
    for cls, ev in h.evaluators.items():
        for k, v in ev.result().items():
            assert t.evaluators[cls].result()[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (cls, k)


@pytest.mark.slow
def test_a_worker_killed_mid_run(cluster, s3, s3_env, synthetic_root):
    from zsad.flows.precompute import run_precompute
    samples, cfg = read_dataset("synthetic", str(synthetic_root)), PipelineConfig.tiny()
    store = s3.make_bucket("killed") + "/zsad.zarr"
    with distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
    result: dict = {}
    run = threading.Thread(
        target=lambda: result.update(
            out=run_precompute(
                PrecomputeRequest(
                    store=store, progress=False, dask_address=cluster.scheduler_address, name="synthetic"
                ),
                samples=samples,
                cfg=cfg,
            )
        )
    )
    run.start()
    st, sam = StageStore(store), f"sam/{plan_stages(cfg).hashes['sam']}/synthetic"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(st.children(f"{sam}/{c}/test") for c in ("pill", "washer")):
        time.sleep(0.1)  # until SAM has written its first unit
    os.kill(next(iter(pids.values())), signal.SIGKILL)  # kill -9 one worker mid-run
    assert run.is_alive()  # mid-run indeed
    run.join(600)
    if "out" not in result:  # Dask gave up on the shard: the rerun completes it
        result["out"] = run_precompute(
            PrecomputeRequest(store=store, progress=False, dask_address=cluster.scheduler_address, name="synthetic"),
            samples=samples,
            cfg=cfg,
        )
    assert result["out"].failed == ()
    assert len(complete_units(store)) == N_IMAGES * 7 + 2  # all there, each read whole
    rerun = run_precompute(
        PrecomputeRequest(store=store, progress=False, dask_address=cluster.scheduler_address, name="synthetic"),
        samples=samples,
        cfg=cfg,
    )
    assert rerun.units_written == 0


def test_a_store_the_workers_cannot_see_is_refused(tmp_path, synthetic_root, capsys):
    with pytest.raises(ValueError, match="relative local path.*object storage"):
        check_shared_store("zsad-store.zarr", "tcp://10.1.2.3:8786")
    with pytest.raises(ValueError, match="--shared-path"):
        check_shared_store(str(tmp_path / "s.zarr"), "tcp://10.1.2.3:8786")
    check_shared_store(str(tmp_path / "s.zarr"), "tcp://10.1.2.3:8786", shared_path=True)
    check_shared_store(str(tmp_path / "s.zarr"), "tcp://127.0.0.1:8786")  # this machine's workers see it
    check_shared_store("s3://bucket/zsad.zarr", "tcp://10.1.2.3:8786")
    check_shared_store("zsad-store.zarr", None)
    from zsad.flows.cli import main
    assert main(["precompute", "--root", str(synthetic_root), "--store", "rel.zarr",
                 "--dask-address", "tcp://10.1.2.3:8786"]) == 2  # refused before any scheduler is contacted
    assert "object storage" in capsys.readouterr().err
    assert main(["aggregate", "--store", "s3://b/x.zarr", "--storage-options", '{"endpoint_url": "http://x"}',
                 "--dask-address", "tcp://10.1.2.3:8786"]) == 2
    assert "every worker's environment" in capsys.readouterr().err


def test_shards_follow_the_workers(synthetic_samples):
    many = synthetic_samples * 10  # 80 records
    assert [len(s) for s in plan_shards(many, 2)] == [10] * 8
    assert max(len(s) for s in plan_shards(many, 1, max_size=4)) == 4
    with pytest.raises(ValueError, match="positive"):
        plan_shards(many, 0)


@pytest.mark.slow
def test_precompute_under_prefect_runs_each_shard_as_a_task_on_the_cluster(cluster, s3, s3_env, synthetic_root,
                                                                          prefect_harness):
    import asyncio

    from prefect.client.orchestration import get_client

    from zsad.flows.prefect_flows import precompute
    store = s3.make_bucket("prefect-cluster") + "/zsad.zarr"
    out = precompute(
        PrecomputeRequest(
            dataset="synthetic",
            root=str(synthetic_root),
            store=store,
            config="tiny",
            progress=False,
            dask_address=cluster.scheduler_address,
        )
    )
    assert out.failed == () and len(out.done) == N_IMAGES and out.units_written == N_IMAGES * 7 + 2
    assert set(out.workers) <= {0, 1, "0", "1"}  # the cluster's workers did the shards, not this process

    async def task_names():
        async with get_client() as client:
            return [t.name for t in await client.read_task_runs()]

    names = asyncio.run(task_names())
    assert sum(n.startswith("precompute-shard") for n in names) == out.shards >= 4
    assert sum(n.startswith("clip_text") for n in names) >= 2


@pytest.mark.slow
def test_musc_distances_on_a_cluster_equal_one_process(cluster, store_copy, synthetic_root, tmp_path):
    """MuSc's N^2 pass as Dask tasks on the workers (each reading its batch's tokens from the
    store and writing its units) equals the one-process pass, up to the GEMM's rounding at one
    thread per worker."""
    import warnings

    from conftest import copy_store
    from zsad.flows.aggregate import run_variants
    from zsad.flows.precompute import run_precompute
    run_precompute(PrecomputeRequest(store=store_copy, progress=False, name="synthetic", config="musc-tiny"),
                   samples=read_dataset("synthetic", synthetic_root))
    local = copy_store(store_copy, tmp_path / "local.zarr")
    request = AggregateRequest(store=store_copy, dataset="synthetic", config="musc-tiny", variants="mode=musc",
                               dask_address=cluster.scheduler_address, evaluate=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 4 images a class: MuSc's int(0.3 x 3) = 0, raised to 1
        there = run_variants(request)
        here = run_variants(request.replace(store=local, dask_address=None))
    (t,), (h,) = there.values(), here.values()
    assert t.scheduler == "distributed" and t.n_images == h.n_images == N_IMAGES
    for cls, rows in h.rows.items():
        got = {r.unit: r.sample_score for r in t.rows[cls]}
        for r in rows:
            assert got[r.unit] == pytest.approx(r.sample_score, rel=1e-5, abs=1e-7)
    plan = plan_stages(load_pipeline_config("musc-tiny"))
    assert len(StageStore(store_copy).list_units("musc", plan.musc_hash(3, None), "synthetic")) == N_IMAGES

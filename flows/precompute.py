"""Flow ``precompute``: data set -> every expensive stage, in dependency order, batched, resumable.

``run_precompute`` is the work; the ``precompute`` flow wraps it so that, inside a flow run,
each stage of each shard is a Prefect task (``tasks.common.call``). Outside one (``zsad
predict``, notebooks) the same code runs as plain functions, with no Prefect API at all.
An image that fails in any stage is recorded and dropped from the later stages; the others go on.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from typing import Any, Callable, Iterable

from prefect import flow
from tqdm import tqdm

from stores import StageStore, Unit
from tasks.clip_text import clip_text
from tasks.common import call
from tasks.fused import build_fused
from tasks.plan import StagePlan, plan_stages
from tasks.runtime import MODEL_LOADS, begin_run
from tasks.shard import ShardJob, ShardReport, precompute_shard
from zsad.config import PipelineConfig, to_jsonable
from zsad.datasets import Sample, read_dataset

from .cluster import check_shared_store, cluster_threads, dask_client, plan_shards
from .configs import load_pipeline_config


def prepare_store(store: StageStore, plan: StagePlan) -> None:
    for stage in plan.stages():
        store.ensure_stage(stage, plan.hashes[stage], plan.configs[stage], plan.inputs[stage], plan.weights[stage])


def dataset_name(kind: str, name: str | None) -> str:
    return name or kind


def _shards(samples: list[Sample], shard_size: int) -> list[list[Sample]]:
    if shard_size < 1:
        raise ValueError(f"shard size must be a positive number of images, got {shard_size}")
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.class_name].append(s)
    return [group[i: i + shard_size] for _, group in sorted(by_class.items())
            for i in range(0, len(group), shard_size)]


def _summary(reports: Iterable[ShardReport]) -> dict[str, Any]:
    """Done, failed, units written and, per worker, shards, images and model loads."""
    done, failed, written, workers = [], [], 0, {}
    for r in reports:
        done += r.done
        failed += r.failed
        written += r.units_written
        w = workers.setdefault(r.worker, {"shards": 0, "images": 0, "models_loaded": {}})
        w["shards"] += 1
        w["images"] += len(r.done) + len(r.failed)
        for family, n in r.models_loaded.items():
            w["models_loaded"][family] = w["models_loaded"].get(family, 0) + n
    return {"done": done, "failed": failed, "units_written": written, "workers": workers}


def _results(futures: list[Any], progress: bool) -> list[Any]:
    """Each future's result (Dask's or Prefect's), in order, with a progress bar."""
    return [f.result() for f in tqdm(futures, desc="precompute", unit="shard", disable=not progress)]


def run_precompute(samples: list[Sample], dataset: str, store: str, cfg: PipelineConfig,
                   shard_size: int = 32, progress: bool = True, verify: bool = False,
                   fusions: tuple[str, ...] = (), dask_address: str | None = None,
                   shared_path: bool = False) -> dict[str, Any]:
    """Compute every missing stage of ``samples`` into ``store`` under data set name ``dataset``;
    ``fusions``: also the derived ``fused`` maps of these fusion methods (``tasks.fused``).

    ``verify`` reads every unit's completeness marker instead of trusting the unit index (see
    ``stores.index``; object storage only). ``dask_address``: run the shards (and the prompts)
    as tasks on that ``dask.distributed`` cluster (``flows.cluster``; inside a flow run through
    Prefect's ``DaskTaskRunner``, so each shard is a task in the UI); the store must be one
    every worker sees (``check_shared_store``).

    Returns small facts only: counts, stage hashes, the units done and the failures
    (``{"unit", "stage", "path", "error"}`` records), units written and models loaded, and per
    worker the shards, images and model loads.
    """
    check_shared_store(store, dask_address, shared_path)
    plan = plan_stages(cfg)
    cfg_json, hashes = to_jsonable(cfg), plan.hashes
    job = ShardJob(store, hashes, dataset, cfg_json, uuid.uuid4().hex, verify)
    st = begin_run(store, job.run_id, verify)  # the unit index read afresh: others may have added or pruned units
    st.sweep_temps()  # what a killed run left half-written
    prepare_store(st, plan)
    classes = sorted({s.class_name for s in samples})
    records = lambda shard: [dataclasses.asdict(s) for s in shard]  # noqa: E731
    if dask_address:
        with dask_client(dask_address) as client:
            shards = plan_shards(samples, cluster_threads(client), shard_size)
            submit = _submitter(client)
            reports = _results([submit(precompute_shard, job, records(sh)) for sh in shards], progress)
            texts = _results([submit(clip_text.fn, store, hashes, dataset, c, cfg_json) for c in classes], False)
    else:
        loads_before = sum(MODEL_LOADS.values())
        reports = [precompute_shard(job, records(sh))
                   for sh in tqdm(_shards(samples, shard_size), desc="precompute", unit="shard",
                                  disable=not progress)]
        texts = [call(clip_text, store, hashes, dataset, cls, cfg_json) for cls in classes]
        here = sum(MODEL_LOADS.values()) - loads_before  # the prompts' model too
    out = _summary(reports)
    out["units_written"] += sum(texts)
    fused = build_fused(st, plan, [Unit.parse(u) for u in out["done"]], fusions) if fusions else 0
    return {"fused_written": fused, "dataset": dataset, "n_images": len(samples), "classes": classes,
            "hashes": hashes, **out, "shards": len(reports),
            "models_loaded": sum(n for w in out["workers"].values() for n in w["models_loaded"].values())
            if dask_address else here}


def _submitter(client: Any) -> Callable[..., Any]:
    """``submit(fn, *args)``: a Prefect task on the flow's ``DaskTaskRunner`` inside a flow run
    (visible in the UI), else a plain Dask task (``pure=False``: always run, never deduplicated)."""
    from prefect.context import FlowRunContext
    if FlowRunContext.get() is not None:
        from tasks.shard import shard_task, text_task
        tasks = {precompute_shard: shard_task, clip_text.fn: text_task}
        return lambda fn, *args: tasks[fn].submit(*args)
    return lambda fn, *args: client.submit(fn, *args, pure=False)


@flow(name="zsad-precompute")
def precompute(dataset: str = "synthetic", root: str = "zsad-demo/data", store: str = "zsad-store.zarr",
               config: str = "tiny", classes: list[str] | None = None, name: str | None = None,
               shard_size: int = 32, device: str | None = None, progress: bool = True,
               verify: bool = False, patches: bool | None = None, split: str = "test",
               fusions: list[str] | None = None, dask_address: str | None = None,
               shared_path: bool = False, images_per_batch: int | None = None,
               precision: str | None = None) -> dict[str, Any]:
    """Compute and cache IS-Net, SAM, foreground, tiles, CLIP and CLIPSeg outputs for a data set.

    Re-running skips every complete unit; an interrupted run resumes where it stopped. ``patches``
    adds CLIP patch tokens (the few-shot and mutual modes); ``split="train"`` caches the data
    set's normal training images (the few-shot mode's references). ``dask_address``: the shards
    run on that Dask cluster, as the tasks of a sub-flow on Prefect's ``DaskTaskRunner``.
    ``images_per_batch``/``precision`` override the config's (GPU speed; their own cache).
    """
    params = dict(dataset=dataset, root=root, store=store, config=config, classes=classes, name=name,
                  shard_size=shard_size, device=device, progress=progress, verify=verify, patches=patches,
                  split=split, fusions=fusions, dask_address=dask_address, shared_path=shared_path,
                  images_per_batch=images_per_batch, precision=precision)
    if not dask_address:
        return _precompute_here(**params)
    check_shared_store(store, dask_address, shared_path)  # before a cluster is contacted
    from prefect_dask import DaskTaskRunner
    return precompute_on_cluster.with_options(task_runner=DaskTaskRunner(address=dask_address))(**params)


def _precompute_here(dataset: str, root: str, store: str, config: str, classes: list[str] | None, name: str | None,
                     shard_size: int, device: str | None, progress: bool, verify: bool, patches: bool | None,
                     split: str, fusions: list[str] | None, dask_address: str | None, shared_path: bool,
                     images_per_batch: int | None = None, precision: str | None = None) -> dict[str, Any]:
    cfg = load_pipeline_config(config, device=device, patches=patches, images_per_batch=images_per_batch,
                               precision=precision)
    return run_precompute(read_dataset(dataset, root, classes, split), dataset_name(dataset, name), store, cfg,
                          shard_size, progress, verify, tuple(fusions or ()), dask_address, shared_path)


precompute_on_cluster = flow(name="zsad-precompute-on-cluster")(_precompute_here)

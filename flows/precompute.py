"""Flow ``precompute``: data set -> every expensive stage, in dependency order, batched, resumable.

``run_precompute`` is the work; the ``precompute`` flow wraps it so that, inside a flow run,
each stage of each shard is a Prefect task (``zsad.tasks.common.call``). Outside one (``zsad
predict``, notebooks) the same code runs as plain functions, with no Prefect API at all.
An image that fails in any stage is recorded and dropped from the later stages; the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm import tqdm

from zsad.config import PipelineConfig
from zsad.datasets import Sample, read_dataset, scan_folder
from zsad.stores import StageStore, Unit, open_store
from zsad.tasks.clip_text import clip_text, embed_class
from zsad.tasks.common import call, in_flow_run
from zsad.tasks.failures import Failure
from zsad.tasks.fused import build_fused
from zsad.tasks.plan import StagePlan, plan_stages
from zsad.tasks.runner import ShardJob
from zsad.tasks.shard import ShardReport, precompute_shard
from zsad.tasks.worker import MODEL_LOADS, begin_run

from .cluster import check_shared_store, cluster_threads, dask_client, plan_shards
from .configs import load_pipeline_config
from .command_requests import PrecomputeRequest


@dataclass(frozen=True)
class WorkerLoad:
    """What one worker process did in a run: shards, images and model loads per family."""

    shards: int = 0
    images: int = 0
    models_loaded: dict[str, int] = field(default_factory=dict)

    def plus(self, report: ShardReport) -> "WorkerLoad":
        loads = dict(self.models_loaded)
        for family, n in report.models_loaded.items():
            loads[family] = loads.get(family, 0) + n
        return WorkerLoad(self.shards + 1, self.images + len(report.done) + len(report.failed), loads)


@dataclass(frozen=True)
class PrecomputeResult:
    """What a precompute did: the units complete through every stage, the failures of the
    others, units written (shards, prompts and fused maps), models loaded here or on the
    cluster, and per worker its shards, images and loads."""

    dataset: str
    n_images: int
    classes: tuple[str, ...]
    hashes: dict[str, str]
    done: tuple[Unit, ...]
    failed: tuple[Failure, ...]
    units_written: int
    fused_written: int
    shards: int
    models_loaded: int
    workers: dict[str, WorkerLoad]
    skipped: tuple[tuple[str, str], ...] = ()  # a folder's files that are not images: (path, why)
    on_cluster: bool = False

    def summary(self) -> dict[str, Any]:
        """The JSON-able facts (what the command prints): failures as records, no unit list."""
        out = {"dataset": self.dataset, "n_images": self.n_images, "classes": list(self.classes),
               "hashes": self.hashes, "n_done": len(self.done), "failed": [f.record() for f in self.failed],
               "units_written": self.units_written, "fused_written": self.fused_written, "shards": self.shards,
               "models_loaded": self.models_loaded, "workers": {w: vars(load) for w, load in self.workers.items()}}
        return {**out, "skipped": [{"path": p, "reason": why} for p, why in self.skipped]} if self.skipped else out

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def tell(self) -> None:
        """The failures, each worker's share (on a cluster) and the skipped files, on stderr."""
        for f in self.failed:
            print(f"zsad precompute: error: {f.text()}", file=sys.stderr)
        if self.failed:
            print(f"zsad precompute: {len(self.done)} images done, {len(self.failed)} failed (listed above)",
                  file=sys.stderr)
        for worker, w in sorted(self.workers.items(), key=lambda kv: str(kv[0])) if self.on_cluster else ():
            loads = ", ".join(f"{k} {v}" for k, v in sorted(w.models_loaded.items())) or "none (already loaded)"
            print(f"zsad precompute: worker {worker}: {w.images} images in {w.shards} shards; models loaded: {loads}",
                  file=sys.stderr)
        for path, why in self.skipped:
            print(f"zsad precompute: skipped {path}: {why}", file=sys.stderr)

    def show(self) -> None:
        """What ``zsad precompute`` prints: ``tell`` on stderr, the summary as JSON."""
        self.tell()
        print(json.dumps(self.summary(), indent=2, default=str))


def prepare_store(store: StageStore, plan: StagePlan) -> None:
    for stage in plan.stages():
        store.ensure_stage(stage, plan.hashes[stage], plan.configs[stage], plan.inputs[stage], plan.weights[stage])


def _shards(samples: list[Sample], shard_size: int) -> list[list[Sample]]:
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.class_name].append(s)
    return [group[i: i + shard_size] for _, group in sorted(by_class.items())
            for i in range(0, len(group), shard_size)]


def _results(futures: list[Any], progress: bool) -> list[Any]:
    """Each future's result (Dask's or Prefect's), in order, with a progress bar."""
    return [f.result() for f in tqdm(futures, desc="precompute", unit="shard", disable=not progress)]


def pipeline_config(request: PrecomputeRequest) -> PipelineConfig:
    """The request's pipeline config with its overrides (device, patches, batching, precision, SAM's options)."""
    cfg = load_pipeline_config(request.config, device=request.device, patches=request.patches,
                               images_per_batch=request.images_per_batch, precision=request.precision)
    if request.sam_options:
        cfg = dataclasses.replace(cfg, sam_generator=cfg.sam_generator.with_options(request.sam_options))
    return cfg


def run_precompute(request: PrecomputeRequest, *, samples: list[Sample] | None = None,
                   cfg: PipelineConfig | None = None) -> PrecomputeResult:
    """Compute every missing stage of the request's data set (or of ``samples``, named
    ``request.store_name`` in the store) into its store, with ``cfg`` (default: the request's
    config and overrides); ``request.fusions``: also the derived ``fused`` maps.

    ``verify`` reads every unit's completeness marker instead of trusting the unit index (see
    ``zsad.stores.index``; object storage only). ``dask_address``: run the shards (and the
    prompts) as tasks on that ``dask.distributed`` cluster (``zsad.flows.cluster``; inside a
    flow run through Prefect's ``DaskTaskRunner``, so each shard is a task in the UI); the store
    must be one every worker sees (``check_shared_store``).
    """
    r = request
    check_shared_store(r.store, r.dask_address, r.shared_path)
    cfg = cfg or pipeline_config(r)
    if samples is None:
        samples = read_dataset(r.dataset, r.root, list(r.classes) if r.classes else None, r.split)
        skipped = tuple(scan_folder(r.root)[1]) if r.dataset == "folder" else ()
    else:
        skipped = ()
    plan = plan_stages(cfg)
    job = ShardJob(open_store(r.store), plan, cfg, r.store_name, uuid.uuid4().hex, r.verify)
    st = begin_run(job.store, job.run_id, r.verify)  # the unit index read afresh: others may have changed it
    st.sweep_temps()  # what a killed run left half-written
    prepare_store(st, plan)
    classes = tuple(sorted({s.class_name for s in samples}))
    if r.dask_address:
        with dask_client(r.dask_address) as client:
            shards = plan_shards(samples, cluster_threads(client), r.shard_size)
            submit = _submitter(client)
            reports = _results([submit(precompute_shard, job, sh) for sh in shards], r.progress)
            texts = _results([submit(embed_class, job, c) for c in classes], False)
    else:
        loads_before = sum(MODEL_LOADS.values())
        reports = [precompute_shard(job, sh) for sh in tqdm(_shards(samples, r.shard_size), desc="precompute",
                                                             unit="shard", disable=not r.progress)]
        texts = [call(clip_text, job, cls) for cls in classes]
        here = sum(MODEL_LOADS.values()) - loads_before  # the prompts' model too
    workers: dict[str, WorkerLoad] = {}
    for rep in reports:
        workers[rep.worker] = workers.get(rep.worker, WorkerLoad()).plus(rep)
    done = tuple(u for rep in reports for u in rep.done)
    return PrecomputeResult(
        skipped=tuple((str(p), why) for p, why in skipped), on_cluster=bool(r.dask_address), dataset=r.store_name, n_images=len(samples), classes=classes, hashes=plan.hashes, done=done,
        failed=tuple(f for rep in reports for f in rep.failed),
        units_written=sum(rep.units_written for rep in reports) + sum(texts),
        fused_written=build_fused(st, plan, done, r.fusions) if r.fusions else 0, shards=len(reports),
        models_loaded=sum(sum(w.models_loaded.values()) for w in workers.values()) if r.dask_address else here,
        workers=workers)


def _submitter(client: Any) -> Callable[..., Any]:
    """``submit(fn, *args)``: a Prefect task on the flow's ``DaskTaskRunner`` inside a flow run
    (visible in the UI), else a plain Dask task (``pure=False``: always run, never deduplicated)."""
    if in_flow_run():
        from zsad.tasks.shard import shard_task, text_task
        tasks = {precompute_shard: shard_task, embed_class: text_task}
        return lambda fn, *args: tasks[fn].submit(*args)
    return lambda fn, *args: client.submit(fn, *args, pure=False)

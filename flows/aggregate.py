"""Flow ``aggregate``: cached arrays -> scores (and, when asked, maps) for one or many variants, with Dask.

Reads only the store and never imports a model. Each variant is written under its own hash;
with ``evaluate`` the same pass streams every labelled image's maps into per-class metric
accumulators (merged pairwise, so memory stays bounded), and no map needs to be stored.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import dask
from prefect import flow

from tasks.aggregate import AggregateRun, VariantJob, aggregate_units, merge_chunks
from stores import StageStore
from tasks.patches import Context, patch_contexts
from tasks.plan import plan_stages
from tasks.runtime import begin_run
from zsad.config import to_jsonable
from zsad.evaluation import ClassEvaluator

from .cluster import check_shared_store, cluster_threads, dask_client
from .configs import check_device, load_pipeline_config, variant_grid, variant_label


@dataclass
class VariantOutcome:
    """What one run did for one variant (``run_variants`` returns one per variant hash).

    Attributes:
        label: the variant's readable label; config: its config as JSON.
        n_images: images scored; written: units written now; scheduler: the Dask scheduler used.
        contexts: class -> patch context (few-shot, mutual): what drawing its maps needs.
        evaluators: class -> ``ClassEvaluator`` (``evaluate`` runs); rows: class -> that
            class's ``{"unit", "label", "score"}`` rows (``evaluate`` runs).
    """

    label: str
    config: dict[str, Any]
    n_images: int = 0
    written: int = 0
    scheduler: str = "threads"
    contexts: dict[str, Context] = field(default_factory=dict)
    evaluators: dict[str, ClassEvaluator] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The small, JSON-able facts (what the flow returns and the CLI prints)."""
        return {"label": self.label, "config": self.config, "n_images": self.n_images, "written": self.written,
                "scheduler": self.scheduler}


@contextlib.contextmanager
def one_thread_per_worker():
    """BLAS and torch single-threaded while Dask's threads share the cores: the per-image work
    is small, and nested pools spin or sleep (measured: 2 Dask threads x 2 BLAS/OpenMP threads on
    2 cores burnt twice the CPU for the same wall time; a sleeping OpenMP pool took 3 ms to wake
    for a 0.1 ms float16 conversion)."""
    import torch
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def _chunks(units: list[str], chunk: int | None, workers: int) -> list[list[str]]:
    """Chunks of units (one Dask task each): ``chunk`` images, or by default enough chunks to
    keep ``workers`` busy (4 per worker) with at most 64 images each."""
    if not chunk:
        chunk = max(1, min(64, -(-len(units) // (4 * max(1, workers)))))
    return [units[i: i + chunk] for i in range(0, len(units), chunk)]


def run_variants(store: str, dataset: str, config: str = "tiny", variants: str | None = "seed",
                 classes: list[str] | None = None, scheduler: str = "auto", dask_address: str | None = None,
                 chunk: int | None = None, overwrite: bool = False, units: list[str] | None = None,
                 save_maps: bool = False, evaluate: bool = False, pixel_size: int | None = None,
                 read_only: bool = False, device: str = "cpu", shared_path: bool = False
                 ) -> dict[str, VariantOutcome]:
    """The work of the ``aggregate`` flow, callable without Prefect (CLI, benchmarks, notebooks).

    ``units`` restricts the work to these unit paths (``dataset/class/split/id``); default: every
    image of ``dataset`` (and ``classes``) whose precompute finished (the last stage, ``clipseg``,
    is complete): an image that failed there has nothing to aggregate and is left out, and so are
    the train split's images (the few-shot mode's references, never scored as test images).
    Few-shot and mutual variants first find or build their per-class reference memories and
    compute the missing mutual scores (``tasks.patches``; a Dask pass of its own).
    ``save_maps`` also writes each image's full-size map (float16). ``evaluate`` fills each
    ``VariantOutcome``'s ``evaluators`` (maps streamed in this pass) and ``rows``. ``read_only`` writes
    nothing to the store (missing scores and fused maps are computed and returned, not kept):
    what a user with read-only access to a shared cache can run. ``scheduler``: ``threads``
    (``auto``; the numpy, torch and file work releases the GIL: both cores busy), ``processes``
    (measured slower: each worker imports torch and results are pickled) or ``synchronous``.
    ``device``: ``cuda`` pastes and counts the maps of an evaluation on the GPU (zero-shot
    variants; ``zsad.torchpixels``). ``dask_address``: the mutual pass and the chunks run on that
    ``dask.distributed`` cluster, whose workers must all see ``store`` (``flows.cluster``).
    """
    check_shared_store(store, dask_address, shared_path)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(dask_client(dask_address)) if dask_address else None
        if read_only and save_maps:
            raise ValueError("--save-maps writes maps into the store; it cannot be combined with --read-only")
        run_id = uuid.uuid4().hex
        st = begin_run(store, run_id)  # see units other writers completed since this process last looked
        return _run_variants(st.read_only_view() if read_only else st, run_id, dataset, config, variants, classes,
                             scheduler, client, chunk, overwrite, units, save_maps, evaluate, pixel_size, device)


def _run_variants(st: StageStore, run_id: str, dataset: str, config: str, variants: str | None | list,
                  classes: list[str] | None, scheduler: str, client: Any, chunk: int | None, overwrite: bool,
                  units: list[str] | None, save_maps: bool, evaluate: bool, pixel_size: int | None, device: str
                  ) -> dict[str, VariantOutcome]:
    plan, store = plan_stages(load_pipeline_config(config)), st.url
    if not st.read_only:
        st.sweep_temps()
    if units is None:
        units = [u.path for u in st.list_units("clipseg", plan.hashes["clipseg"], dataset, classes) if u.split != "train"]
    if not units:
        raise ValueError(f"{store}: no images of data set {dataset!r} (classes {classes or 'all'}) are cached "
                         f"for this config; run `zsad precompute` first")
    meta, jobs = {}, []
    wanted = variant_grid(variants) if isinstance(variants, (str, type(None))) else variants
    for agg in dict.fromkeys(wanted):
        vh = plan.aggregate_hash(agg)
        if not st.read_only:
            st.ensure_stage("aggregate", vh, to_jsonable(agg), plan.aggregate_inputs(agg))
        meta[vh] = VariantOutcome(variant_label(agg), to_jsonable(agg))
        jobs.append(VariantJob(vh, agg))
    scheduler = "distributed" if client else ("threads" if scheduler == "auto" else scheduler)
    contexts = patch_contexts(st, plan, [(j.variant_hash, j.config) for j in jobs], units, dataset,
                              client.get if client else scheduler)
    for (vh, cls), ctx in contexts.items():  # what drawing a map of the variant needs (report panels)
        meta[vh].contexts[cls] = ctx
    torch_device = None if check_device(device) == "cpu" else device  # the host's numpy path on a CPU
    run = AggregateRun(store, plan, tuple(jobs), contexts, overwrite, save_maps, evaluate, pixel_size, not st.read_only,
                       torch_device, run_id)
    workers = cluster_threads(client) if client else 1 if scheduler in ("synchronous", "sync") else (os.cpu_count() or 1)
    tasks = [dask.delayed(aggregate_units)(run, part) for part in _chunks(units, chunk, workers)]
    while len(tasks) > 1:  # a tree of merges: partial accumulators are released as they are merged
        tasks = [dask.delayed(merge_chunks)(*tasks[i: i + 2]) if i + 1 < len(tasks) else tasks[i]
                 for i in range(0, len(tasks), 2)]
    if client:
        (result,) = client.gather(client.compute(tasks))
    else:
        with one_thread_per_worker():
            (result,) = dask.compute(*tasks, scheduler=scheduler)
    if not st.read_only:  # what this process's threads wrote, into the unit index at once (object storage)
        st.index.flush(("aggregate", "fused"))
    for row in result.rows:
        m = meta[row.variant]
        m.n_images += 1
        m.written += int(row.written)
        if evaluate:
            m.rows.setdefault(row.unit.split("/")[1], []).append(
                {"unit": row.unit, "label": row.label, "score": row.sample_score})
    if evaluate:
        for (vh, cls), ev in sorted(result.evaluators(run).items()):
            meta[vh].evaluators[cls] = ev
    for m in meta.values():
        m.scheduler = scheduler
    return meta


@flow(name="zsad-aggregate", persist_result=True)
def aggregate(store: str = "zsad-store.zarr", dataset: str = "synthetic", config: str = "tiny",
              variants: str | None = "seed", classes: list[str] | None = None, scheduler: str = "auto",
              dask_address: str | None = None, chunk: int | None = None, overwrite: bool = False,
              save_maps: bool = False, shared_path: bool = False) -> dict[str, Any]:
    """Score cached images for the variants (``seed``, ``grid`` or ``field=a,b;field=c``);
    ``dask_address``: on that Dask cluster (``flows.cluster``)."""
    out = run_variants(store, dataset, config, variants, classes, scheduler, dask_address, chunk, overwrite,
                       save_maps=save_maps, shared_path=shared_path)
    return {vh: o.summary() for vh, o in out.items()}

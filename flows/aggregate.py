"""Flow ``aggregate``: cached arrays -> scores (and, when asked, maps) for one or many variants, with Dask.

Reads only the store and never imports a model. Each variant is written under its own hash;
with ``evaluate`` the same pass streams every labelled image's maps into per-class metric
accumulators (merged pairwise, so memory stays bounded), and no map needs to be stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import dask

from zsad.config import AggregateConfig, to_jsonable
from zsad.evaluation import ClassEvaluator
from zsad.stores import StageStore, Unit, open_store
from zsad.sweep import expand, parse_axes, with_shots
from zsad.tasks.aggregate import AggregateRun, Row, VariantJob, aggregate_units, merge_chunks
from zsad.tasks.contexts import variant_contexts
from zsad.variant_fields import square_protocol
from zsad.tasks.plan import plan_stages
from zsad.tasks.worker import begin_run

from .cluster import check_shared_store, cluster_threads, dask_client
from .configs import check_device, load_pipeline_config, variant_grid, variant_label
from .command_requests import AggregateRequest


@dataclass
class VariantOutcome:
    """What one run did for one variant (``run_variants`` returns one per variant hash).

    Attributes:
        label: the variant's readable label; config: its config as JSON.
        n_images: images scored; written: units written now; scheduler: the Dask scheduler used.
        contexts: class -> the detector's per-class context (few-shot, mutual, MuSc): what drawing its
            maps needs.
        evaluators: class -> ``ClassEvaluator`` (``evaluate`` runs); rows: class -> that
            class's ``Row`` (unit, label, sample score) per image (``evaluate`` runs).
    """

    label: str
    config: dict[str, Any]
    n_images: int = 0
    written: int = 0
    scheduler: str = "threads"
    contexts: dict[str, Any] = field(default_factory=dict)
    evaluators: dict[str, ClassEvaluator] = field(default_factory=dict)
    rows: dict[str, list[Row]] = field(default_factory=dict)

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


def _chunks(units: list[Unit], chunk: int | None, workers: int) -> list[list[Unit]]:
    """Chunks of units (one Dask task each): ``chunk`` images, or by default enough chunks to
    keep ``workers`` busy (4 per worker) with at most 64 images each."""
    if not chunk:
        chunk = max(1, min(64, -(-len(units) // (4 * max(1, workers)))))
    return [units[i: i + chunk] for i in range(0, len(units), chunk)]


def variant_configs(request: AggregateRequest) -> list[AggregateConfig]:
    """The request's variants, parsed once: its ``configs``, else its ``variants`` text with
    ``shots``/``shot_seed``/``reference`` (a reference folder is cached into the store first)."""
    if request.configs is not None:
        return list(dict.fromkeys(request.configs))
    r, ref = request, None
    if r.reference:
        from .references import cache_references, reference_classes, reference_name
        cfg = load_pipeline_config(r.config, patches=True)
        ref = reference_name(r.reference, r.dataset)
        failed = cache_references(r.reference, reference_classes(r.reference, r.classes), r.store, cfg, ref)
        for f in failed:
            print(f"zsad: reference left out: {f.text()}", file=sys.stderr)
    if r.shots is None and r.shot_seed is None and ref is None:
        return list(dict.fromkeys(variant_grid(r.variants)))
    return list(dict.fromkeys(expand(with_shots(parse_axes(r.variants), shots=r.shots, seed=r.shot_seed,
                                                reference=ref))))


def run_aggregate(request: AggregateRequest) -> dict[str, Any]:
    """The ``aggregate`` command: ``run_variants``'s small, JSON-able facts per variant hash."""
    return {vh: o.summary() for vh, o in run_variants(request).items()}


def run_variants(request: AggregateRequest) -> dict[str, VariantOutcome]:
    """The work of the ``aggregate`` flow (and of ``evaluate``'s pass), callable without Prefect.

    ``request.units`` restricts the work to these images; default: every image of the data set
    (and classes) whose precompute finished (the last stage, ``clipseg``, is complete): an image
    that failed there has nothing to aggregate and is left out, and so are the train split's
    images (the few-shot mode's references, never scored as test images). Few-shot and mutual
    variants first find or build their per-class reference memories and compute the missing
    mutual scores (``zsad.tasks.patches``; a Dask pass of its own). ``save_maps`` also writes each
    image's full-size map (float16). ``evaluate`` fills each ``VariantOutcome``'s ``evaluators``
    (maps streamed in this pass) and ``rows``. ``read_only`` writes nothing to the store (missing
    scores and fused maps are computed and returned, not kept). ``scheduler``: ``threads``
    (``auto``; the numpy, torch and file work releases the GIL: both cores busy), ``processes``
    (measured slower: each worker imports torch and results are pickled) or ``synchronous``.
    ``device``: ``cuda`` pastes and counts the maps of an evaluation on the GPU (zero-shot
    variants; ``zsad.torchpixels``). ``dask_address``: the mutual pass and the chunks run on that
    ``dask.distributed`` cluster, whose workers must all see the store (``zsad.flows.cluster``).
    """
    check_shared_store(request.store, request.dask_address, request.shared_path)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(dask_client(request.dask_address)) if request.dask_address else None
        run_id = uuid.uuid4().hex
        st = begin_run(open_store(request.store, read_only=request.read_only), run_id)  # others' units since
        return _run_variants(request, st, run_id, client)


def _run_variants(request: AggregateRequest, st: StageStore, run_id: str, client: Any) -> dict[str, VariantOutcome]:
    r = request
    plan = plan_stages(load_pipeline_config(r.config))
    if not st.read_only:
        st.sweep_temps()
    units = list(r.units) if r.units is not None else \
        [u for u in st.list_units("clipseg", plan.hashes["clipseg"], r.dataset, list(r.classes) if r.classes else None)
         if u.split != "train"]
    if not units:
        raise ValueError(f"{st.url}: no images of data set {r.dataset!r} (classes {list(r.classes or []) or 'all'}) "
                         "are cached for this config; run `zsad precompute` first")
    meta, jobs = {}, []
    for agg in variant_configs(r):
        vh = plan.aggregate_hash(agg)
        if not st.read_only:
            st.ensure_stage("aggregate", vh, to_jsonable(agg), plan.aggregate_inputs(agg))
        meta[vh] = VariantOutcome(variant_label(agg), to_jsonable(agg))
        jobs.append(VariantJob(vh, agg))
    scheduler = "distributed" if client else ("threads" if r.scheduler == "auto" else r.scheduler)
    device = r.device or "cpu"
    torch_device = None if check_device(device) == "cpu" else device  # the host's numpy path on a CPU
    run = AggregateRun(st, plan, tuple(jobs), overwrite=r.overwrite, save_maps=r.save_maps, evaluate=r.evaluate,
                       pixel_size=r.pixel_size, square=square_protocol(r.protocol), device=torch_device, run_id=run_id)
    contexts = variant_contexts(run, units, r.dataset, scheduler=client.get if client else scheduler, device=device)
    if not st.read_only:
        st.index.flush(("mutual", "musc", "memory"))
    for (vh, cls), ctx in contexts.items():  # what drawing a map of the variant needs (report panels)
        meta[vh].contexts[cls] = ctx
    run = dataclasses.replace(run, contexts=contexts)
    workers = (
        cluster_threads(client) if client else 1 if scheduler in ("synchronous", "sync") else (os.cpu_count() or 1)
    )
    tasks = [dask.delayed(aggregate_units)(run, part) for part in _chunks(units, r.chunk, workers)]
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
    _add_rows(meta, result.rows, r.evaluate)
    if r.evaluate:
        for (vh, cls), ev in sorted(result.evaluators(run).items()):
            meta[vh].evaluators[cls] = ev
    return _finished(meta, scheduler)


def _add_rows(meta: dict[str, VariantOutcome], rows: list[Row], evaluate: bool) -> None:
    for row in rows:
        m = meta[row.variant]
        m.n_images += 1
        m.written += int(row.written)
        if evaluate:
            m.rows.setdefault(row.unit.class_name, []).append(row)


def _finished(meta: dict[str, VariantOutcome], scheduler: str) -> dict[str, VariantOutcome]:
    for m in meta.values():
        m.scheduler = scheduler
    return meta

"""Flow ``aggregate``: cached arrays -> scores (and, when asked, maps) for one or many variants, with Dask.

Reads only the store and never imports a model. Each variant is written under its own hash;
with ``evaluate`` the same pass streams every labelled image's maps into per-class metric
accumulators (merged pairwise, so memory stays bounded), and no map needs to be stored.
"""

from __future__ import annotations

from typing import Any

import dask
from prefect import flow

from tasks.aggregate import aggregate_units, merge_chunks
from tasks.patches import patch_contexts
from tasks.plan import plan_stages
from tasks.runtime import open_store
from zsad.config import to_jsonable
from zsad.modes import normalise

from .configs import load_pipeline_config, variant_grid, variant_label


def _client(address: str):
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValueError("--dask-address needs dask.distributed: pip install 'dask[distributed]'") from None
    return Client(address)


def run_variants(store: str, dataset: str, config: str = "tiny", variants: str | None = "seed",
                 classes: list[str] | None = None, scheduler: str = "threads", dask_address: str | None = None,
                 chunk: int = 8, overwrite: bool = False, units: list[str] | None = None, save_maps: bool = False,
                 evaluate: bool = False, pixel_size: int | None = None, read_only: bool = False) -> dict[str, Any]:
    """The work of the ``aggregate`` flow, callable without Prefect (CLI, benchmarks, notebooks).

    ``units`` restricts the work to these unit paths (``dataset/class/split/id``); default: every
    image of ``dataset`` (and ``classes``) whose precompute finished (the last stage, ``clipseg``,
    is complete): an image that failed there has nothing to aggregate and is left out, and so are
    the train split's images (the few-shot mode's references, never scored as test images).
    Few-shot and mutual variants first find or build their per-class reference memories and
    compute the missing mutual scores (``tasks.patches``; a Dask pass of its own).
    ``save_maps`` also writes each image's full-size map (float16). ``evaluate`` adds, per
    variant, ``evaluators`` (``{class: ClassEvaluator}``, maps streamed in this pass) and ``rows``
    (``{class: [{"unit", "label", "score"}]}``) to the returned facts. ``read_only`` writes
    nothing to the store (missing scores are computed and returned, not kept): what a user with
    read-only access to a shared cache can run.
    """
    if read_only and save_maps:
        raise ValueError("--save-maps writes maps into the store; it cannot be combined with --read-only")
    plan = plan_stages(load_pipeline_config(config))
    st = open_store(store)
    st.index.forget()  # see units other writers completed since this process last looked
    if not read_only:
        st.sweep_temps()
    if units is None:
        units = [u.path for u in st.list_units("clipseg", plan.hashes["clipseg"], dataset, classes) if u.split != "train"]
    if not units:
        raise ValueError(f"{store}: no images of data set {dataset!r} (classes {classes or 'all'}) are cached "
                         f"for this config; run `zsad precompute` first")
    meta, variant_list, chosen = {}, [], []
    wanted = variant_grid(variants) if isinstance(variants, (str, type(None))) else variants
    for agg in dict.fromkeys(normalise(a) for a in wanted):
        vh = plan.aggregate_hash(agg)
        if not read_only:
            st.ensure_stage("aggregate", vh, to_jsonable(agg), plan.aggregate_inputs(agg))
        meta[vh] = {"label": variant_label(agg), "config": to_jsonable(agg), "n_images": 0, "written": 0}
        chosen.append((vh, agg))
        variant_list.append((vh, to_jsonable(agg)))
    contexts = patch_contexts(store, plan, chosen, units, dataset, read_only, scheduler)
    for (vh, cls), ctx in contexts.items():  # what drawing a map of the variant needs (report panels)
        meta[vh].setdefault("contexts", {})[cls] = ctx
    jobs = [dask.delayed(aggregate_units)(store, plan.hashes, variant_list, units[i: i + chunk], overwrite,
                                          save_maps, evaluate, pixel_size, read_only, contexts)
            for i in range(0, len(units), chunk)]
    while len(jobs) > 1:  # a tree of merges: partial accumulators are released as they are merged
        jobs = [dask.delayed(merge_chunks)(*jobs[i: i + 2]) if i + 1 < len(jobs) else jobs[i]
                for i in range(0, len(jobs), 2)]
    if dask_address:
        client = _client(dask_address)
        (result,) = client.gather(client.compute(jobs))
    else:
        (result,) = dask.compute(*jobs, scheduler=scheduler)
    for row in result["rows"]:
        m = meta[row["variant"]]
        m["n_images"] += 1
        m["written"] += int(row["written"])
        if evaluate:
            m.setdefault("rows", {}).setdefault(row["unit"].split("/")[1], []).append(
                {"unit": row["unit"], "label": row["label"], "score": row["sample_score"]})
    if evaluate:
        for (vh, cls), ev in sorted(result["evaluators"].items()):
            meta[vh].setdefault("evaluators", {})[cls] = ev
    return meta


@flow(name="zsad-aggregate", persist_result=True)
def aggregate(store: str = "zsad-store.zarr", dataset: str = "synthetic", config: str = "tiny",
              variants: str | None = "seed", classes: list[str] | None = None, scheduler: str = "threads",
              dask_address: str | None = None, chunk: int = 8, overwrite: bool = False,
              save_maps: bool = False) -> dict[str, Any]:
    """Score cached images for the variants (``seed``, ``grid`` or ``field=a,b;field=c``)."""
    return run_variants(store, dataset, config, variants, classes, scheduler, dask_address, chunk, overwrite,
                        save_maps=save_maps)

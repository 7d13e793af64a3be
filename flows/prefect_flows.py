"""The Prefect flows: ``precompute``, ``aggregate`` and ``evaluate`` (``nightly`` is in
``zsad.flows.nightly``), each taking its command's request as its one parameter and running the
command's plain function (``run_precompute``, ``run_variants``, ``run_evaluate``): with
``--prefect`` or a deployment (``prefect.yaml``) the same code runs as a flow, visible in the UI.
Only this module and ``nightly`` import Prefect; the commands, the service and the workers do not.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from .aggregate import run_aggregate
from .cluster import check_shared_store
from .command_requests import AggregateRequest, EvaluateRequest, PrecomputeRequest
from .evaluate import evaluate_records
from .precompute import PrecomputeResult, run_precompute


@flow(name="zsad-precompute")
def precompute(request: PrecomputeRequest) -> PrecomputeResult:
    """Compute and cache IS-Net, SAM, foreground, tiles, CLIP and CLIPSeg outputs for a data set.

    Re-running skips every complete unit; an interrupted run resumes where it stopped. ``patches``
    adds CLIP patch tokens (the few-shot and mutual modes); ``split="train"`` caches the data
    set's normal training images (the few-shot mode's references). ``dask_address``: the shards
    run on that Dask cluster, as the tasks of a sub-flow on Prefect's ``DaskTaskRunner``.
    ``images_per_batch``/``precision`` override the config's (GPU speed; their own cache).
    """
    from prefect.context import FlowRunContext
    if not request.dask_address or FlowRunContext.get() is None:  # the plain function: plain Dask tasks
        return run_precompute(request)
    check_shared_store(request.store, request.dask_address, request.shared_path)  # before a cluster is contacted
    check_cluster_api()
    from prefect_dask import DaskTaskRunner
    return precompute_on_cluster.with_options(task_runner=DaskTaskRunner(address=request.dask_address))(request)


def check_cluster_api() -> None:
    """A flow's tasks on a Dask cluster report to the Prefect API from the workers: it must be a
    server they reach (``PREFECT_API_URL``). Under Prefect's ephemeral mode each worker process
    would start an API server of its own, which outlives the run."""
    from prefect.settings import PREFECT_API_URL
    if not PREFECT_API_URL.value():
        raise ValueError("--prefect with --dask-address needs a Prefect server the workers reach: start one "
                         "(`prefect server start`) and set PREFECT_API_URL here and on every worker, or drop "
                         "--prefect to run the shards as plain Dask tasks")


@flow(name="zsad-precompute-on-cluster")
def precompute_on_cluster(request: PrecomputeRequest) -> PrecomputeResult:
    return run_precompute(request)


@flow(name="zsad-aggregate", persist_result=True)
def aggregate(request: AggregateRequest) -> dict[str, Any]:
    """Score cached images for the variants (``seed``, ``grid`` or ``field=a,b;field=c``);
    ``dask_address``: on that Dask cluster (``zsad.flows.cluster``)."""
    return run_aggregate(request)


@flow(name="zsad-evaluate", persist_result=True)
def evaluate(request: EvaluateRequest) -> dict[str, dict[str, Any]]:
    """Metrics per class and mean for each variant; stores each class's decision thresholds.
    ``dask_address``: aggregate on that Dask cluster (``zsad.flows.cluster``)."""
    return evaluate_records(request)


__all__ = ["aggregate", "check_cluster_api", "evaluate", "precompute", "precompute_on_cluster"]

"""Work on a ``dask.distributed`` cluster: the connection, the store check, shard planning.

Every worker writes straight into the store, so the store must be one they all see: object
storage (credentials from each worker's own environment, never through the scheduler) or a
file system mounted at the same absolute path everywhere (``--shared-path``). Models stay in
the worker processes (``zsad.tasks.worker``); only sample records and small reports travel.

Start a cluster (see docs/guide/cluster.md)::

    dask scheduler                                        # tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 2 --nthreads 1 # CPU: one torch thread per worker
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nthreads 1   # one per GPU
    dask cuda worker tcp://HOST:8786                      # or dask-cuda: one worker per GPU
"""

from __future__ import annotations

import math
import os
from typing import Any
from urllib.parse import urlsplit

from zsad.datasets import Sample

from .request_fields import is_loopback



def dask_client(address: str) -> Any:
    """A ``dask.distributed.Client`` for ``address`` (``tcp://host:8786``)."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--dask-address needs dask.distributed: pip install distributed") from None
    try:
        return Client(address, timeout="30s")
    except OSError as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {address}: {exc}; start one with "
                         "`dask scheduler` and workers with `dask worker ADDRESS`") from None


def _loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    return address.startswith("inproc://") or host == "" or is_loopback(host)


def check_shared_store(store: str, address: str | None, shared_path: bool = False) -> None:
    """Refuse a store the cluster's workers may not see: a relative local path with any
    scheduler, and an absolute one with a scheduler on another machine unless ``shared_path``
    says every worker mounts it at that path."""
    if not address or "://" in store and not store.startswith("file://"):
        return
    path = store.removeprefix("file://")
    if not os.path.isabs(path):
        raise ValueError(f"store {store!r} is a relative local path, but the workers of {address} run in other "
                         "processes, maybe other machines, with other working directories. Use object storage "
                         "(e.g. s3://bucket/zsad.zarr; each worker takes its credentials from its own environment) "
                         "or an absolute path on a file system every worker mounts, with --shared-path")
    if not shared_path and not _loopback(address):
        raise ValueError(f"store {store!r} is a local path and the Dask scheduler {address} may have workers on other "
                         "machines, which would not see it. Use object storage (e.g. s3://bucket/zsad.zarr) or, if "
                         "every worker mounts this path (NFS, Lustre, ...), say so with --shared-path")


def cluster_threads(client: Any) -> int:
    """Worker threads across the cluster now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def plan_shards(samples: list[Sample], workers: int, max_size: int = 32, per_worker: int = 4) -> list[list[Sample]]:
    """Shards for ``workers``: about ``per_worker`` per worker (so a slow image or a lost worker
    does not leave the others idle), at most ``max_size`` images each, classes kept together
    in order but not one shard per class (uneven classes would leave workers idle).

    >>> samples = [Sample(f"{i}.png", "a", "test", 0, None, f"{i:02d}") for i in range(10)]
    >>> [len(s) for s in plan_shards(samples, 2)]
    [2, 2, 2, 2, 2]
    """
    if max_size < 1 or workers < 1:
        raise ValueError(f"shard size and workers must be positive, got {max_size} and {workers}")
    ordered = sorted(samples, key=lambda s: (s.class_name, s.split, s.image_id))
    size = max(1, min(max_size, math.ceil(len(ordered) / (workers * per_worker))))
    return [ordered[i: i + size] for i in range(0, len(ordered), size)]

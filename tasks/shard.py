"""One precompute shard: a few images through every image stage, in dependency order.

The unit of work of ``zsad precompute``: run in the calling process, or as one task on a
``dask.distributed`` worker (``flows.cluster``). Only small things travel: sample records in,
a ``ShardReport`` out; the models stay in the worker process that loaded them
(``tasks.runtime.get_model``), the arrays in the store.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from .clip_image import clip_image
from .clipseg import clipseg_maps
from .common import call
from .errors import clear_failures, record_failures
from .foreground import foreground
from .image import register_images
from .isnet import isnet_maps
from .runtime import MODEL_LOADS, begin_run, start_shard
from .sam import sam_masks
from .tiles import tiles

IMAGE_STAGES = (isnet_maps, sam_masks, foreground, tiles, clip_image, clipseg_maps)


@dataclass(frozen=True)
class ShardJob:
    """What every shard of one precompute run shares (small: it travels with each task).

    ``run_id``: a worker process seeing a new one forgets what it knew of the store's unit
    index (other runs may have added or pruned units since); ``verify``: read every unit's
    marker instead of trusting the index; ``cfg``: the ``PipelineConfig`` as JSON."""

    store_url: str
    hashes: dict[str, str]
    dataset: str
    cfg: dict[str, Any]
    run_id: str
    verify: bool = False


@dataclass(frozen=True)
class ShardReport:
    """What one shard did. ``done``: unit paths complete through the last stage; ``failed``:
    per-image failure records (``tasks.runtime.unit_error``); ``worker``: where it ran (a Dask
    worker's name, else ``host:pid``); ``units_written``: units this shard wrote;
    ``models_loaded``: model family -> loads in that process during the shard."""

    done: tuple[str, ...]
    failed: tuple[dict[str, str], ...]
    worker: str
    units_written: int = 0
    models_loaded: dict[str, int] = field(default_factory=dict)


def worker_name() -> str:
    """The Dask worker running this (its name), or ``host:pid`` outside one."""
    try:
        from distributed import get_worker
        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _torch_threads() -> None:
    """``ZSAD_TORCH_THREADS`` (e.g. set per ``dask worker``): torch's intra-op threads here."""
    n = os.environ.get("ZSAD_TORCH_THREADS")
    if n:
        import torch
        torch.set_num_threads(int(n))


def precompute_shard(job: ShardJob, samples: list[dict[str, Any]]) -> ShardReport:
    """Register ``samples`` (``Sample`` records as dicts) and compute every missing stage for
    them; a failing image is recorded and dropped from the later stages, the others go on."""
    _torch_threads()
    store = begin_run(job.store_url, job.run_id, job.verify)
    store_url, hashes, dataset, cfg = job.store_url, job.hashes, job.dataset, job.cfg
    writes, loads = store.writes, dict(MODEL_LOADS)
    start_shard()  # each image decoded once per shard, its record read once
    try:
        out = call(register_images, store_url, hashes["image"], samples, dataset)
        units, failed = out["done"], list(out["failed"])
        for stage in IMAGE_STAGES:
            if not units:
                break
            out = call(stage, store_url, hashes, units, cfg)
            units, failed = out["done"], failed + out["failed"]
        record_failures(store, hashes["image"], failed)
        clear_failures(store, hashes["image"], dataset, units)
    finally:
        start_shard()  # release the decoded images and kept units (a worker process lives on)
    return ShardReport(tuple(units), tuple(failed), worker_name(), store.writes - writes,
                       {k: v - loads.get(k, 0) for k, v in MODEL_LOADS.items() if v - loads.get(k, 0)})


def _prefect_tasks():
    from .clip_text import clip_text
    from .common import zsad_task
    return zsad_task("precompute-shard")(precompute_shard), clip_text


shard_task, text_task = _prefect_tasks()

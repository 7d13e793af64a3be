"""One precompute shard: a few images through every image stage, in dependency order.

The unit of work of ``zsad precompute``: run in the calling process, or as one task on a
``dask.distributed`` worker (``zsad.flows.cluster``). Only small things travel: the ``ShardJob`` and samples in,
a ``ShardReport`` out; the models stay in the worker process that loaded them
(``zsad.tasks.worker.get_model``), the arrays in the store.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from zsad.datasets import Sample
from zsad.stages import STAGES
from zsad.stores import Unit

from .clip_image import clip_image
from .clipseg import clipseg_maps
from .common import call
from .dino_tokens import dino_tokens
from .failures import Failure, clear_failures, record_failures
from .foreground import foreground
from .image import register_images
from .isnet import isnet_maps
from .musc_tokens import musc_tokens
from .runner import ShardJob
from .worker import MODEL_LOADS, begin_run, start_shard
from .sam import sam_masks
from .tiles import tiles

STAGE_TASKS = {"isnet": isnet_maps, "sam": sam_masks, "foreground": foreground, "tiles": tiles,
               "clip_image": clip_image, "clipseg": clipseg_maps, "musc_tokens": musc_tokens,
               "dino_tokens": dino_tokens}  # stage -> the task that computes it
SHARD_STAGES = tuple(s.name for s in STAGES if s.kind == "precompute" and s.per == "image" and s.inputs
                     and s.written_by is None)  # "image" is registered first; per-class stages run per class
if set(SHARD_STAGES) != set(STAGE_TASKS):
    raise ImportError(f"zsad/stages.py declares the per-image precompute stages {SHARD_STAGES}; "
                      f"zsad.tasks.shard.STAGE_TASKS has tasks for {tuple(STAGE_TASKS)}: give each its task")
IMAGE_STAGES = tuple(STAGE_TASKS[name] for name in SHARD_STAGES)  # in dependency order


@dataclass(frozen=True)
class ShardReport:
    """What one shard did. ``done``: units complete through the last stage; ``failed``: the
    others' failures; ``worker``: where it ran (a Dask
    worker's name, else ``host:pid``); ``units_written``: units this shard wrote;
    ``models_loaded``: model family -> loads in that process during the shard."""

    done: tuple[Unit, ...]
    failed: tuple[Failure, ...]
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


def precompute_shard(job: ShardJob, samples: list[Sample]) -> ShardReport:
    """Register ``samples`` and compute every missing stage for them; a failing image is
    recorded and dropped from the later stages, the others go on."""
    _torch_threads()
    store = begin_run(job.store, job.run_id, job.verify)
    writes, loads = store.writes, dict(MODEL_LOADS)
    start_shard()  # each image decoded once per shard, its record read once
    try:
        out = call(register_images, job, samples)
        for stage in IMAGE_STAGES:
            if not out.done:
                break
            out = out.then(call(stage, job, out.done))
        record_failures(store, job.hash("image"), out.failed)
        clear_failures(store, job.hash("image"), job.dataset, out.done)
    finally:
        start_shard()  # release the decoded images and kept units (a worker process lives on)
    return ShardReport(out.done, out.failed, worker_name(), store.writes - writes,
                       {k: v - loads.get(k, 0) for k, v in MODEL_LOADS.items() if v - loads.get(k, 0)})


def _prefect_tasks():
    from .clip_text import clip_text
    from .common import zsad_task
    return zsad_task("precompute-shard")(precompute_shard), clip_text


shard_task, text_task = _prefect_tasks()

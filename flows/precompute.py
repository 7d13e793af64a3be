"""Flow ``precompute``: data set -> every expensive stage, in dependency order, batched, resumable.

``run_precompute`` is the work; the ``precompute`` flow wraps it so that, inside a flow run,
each stage of each shard is a Prefect task (``tasks.common.call``). Outside one (``zsad
predict``, notebooks) the same code runs as plain functions, with no Prefect API at all.
An image that fails in any stage is recorded and dropped from the later stages; the others go on.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from prefect import flow
from tqdm import tqdm

from stores import StageStore, Unit
from tasks.clip_image import clip_image
from tasks.clip_text import clip_text
from tasks.clipseg import clipseg_maps
from tasks.common import call
from tasks.errors import clear_failures, record_failures
from tasks.foreground import foreground
from tasks.fused import build_fused
from tasks.image import register_images
from tasks.isnet import isnet_maps
from tasks.plan import StagePlan, plan_stages
from tasks.runtime import MODEL_LOADS, open_store, start_shard
from tasks.sam import sam_masks
from tasks.tiles import tiles
from zsad.config import PipelineConfig, to_jsonable
from zsad.datasets import Sample, read_dataset

from .configs import load_pipeline_config

IMAGE_STAGES = (isnet_maps, sam_masks, foreground, tiles, clip_image, clipseg_maps)


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


def run_precompute(samples: list[Sample], dataset: str, store: str, cfg: PipelineConfig,
                   shard_size: int = 32, progress: bool = True, verify: bool = False,
                   fusions: tuple[str, ...] = ()) -> dict[str, Any]:
    """Compute every missing stage of ``samples`` into ``store`` under data set name ``dataset``;
    ``fusions``: also the derived ``fused`` maps of these fusion methods (``tasks.fused``).

    ``verify`` reads every unit's completeness marker instead of trusting the unit index (see
    ``stores.index``; object storage only).

    Returns small facts only: counts, stage hashes, model loads in this process, the units
    done and the failures (``{"unit", "stage", "path", "error"}`` records).
    """
    plan = plan_stages(cfg)
    st = open_store(store)
    st.sweep_temps()  # what a killed run left half-written
    st.index.forget()  # read the index afresh: other writers may have added (or pruned) units
    st.index.trusted = not verify
    prepare_store(st, plan)
    writes_before, loads_before = st.writes, sum(MODEL_LOADS.values())
    cfg_json, hashes = to_jsonable(cfg), plan.hashes
    done, failed, n_failed = [], [], 0
    for shard in tqdm(_shards(samples, shard_size), desc="precompute", unit="shard", disable=not progress):
        start_shard()  # each image decoded once per shard, its record read once
        out = call(register_images, store, hashes["image"], [dataclasses.asdict(s) for s in shard], dataset)
        units, failed = out["done"], failed + out["failed"]
        for stage in IMAGE_STAGES:
            if not units:
                break
            out = call(stage, store, hashes, units, cfg_json)
            units, failed = out["done"], failed + out["failed"]
        done += units
        record_failures(st, hashes["image"], failed[n_failed:])
        clear_failures(st, hashes["image"], dataset, units)
        n_failed = len(failed)
    start_shard()  # release the last shard's decoded images (a worker process lives on)
    for cls in sorted({s.class_name for s in samples}):
        call(clip_text, store, hashes, dataset, cls, cfg_json)
    fused = build_fused(st, plan, [Unit(*u.split("/")) if isinstance(u, str) else u for u in done], fusions) \
        if fusions else 0
    return {"fused_written": fused, "dataset": dataset, "n_images": len(samples), "classes": sorted({s.class_name for s in samples}),
            "hashes": hashes, "done": done, "failed": failed, "units_written": st.writes - writes_before,
            "models_loaded": sum(MODEL_LOADS.values()) - loads_before}


@flow(name="zsad-precompute")
def precompute(dataset: str = "synthetic", root: str = "zsad-demo/data", store: str = "zsad-store.zarr",
               config: str = "tiny", classes: list[str] | None = None, name: str | None = None,
               shard_size: int = 32, device: str | None = None, progress: bool = True,
               verify: bool = False, patches: bool | None = None, split: str = "test",
               fusions: list[str] | None = None) -> dict[str, Any]:
    """Compute and cache IS-Net, SAM, foreground, tiles, CLIP and CLIPSeg outputs for a data set.

    Re-running skips every complete unit; an interrupted run resumes where it stopped. ``patches``
    adds CLIP patch tokens (the few-shot and mutual modes); ``split="train"`` caches the data
    set's normal training images (the few-shot mode's references).
    """
    cfg = load_pipeline_config(config, device=device, patches=patches)
    return run_precompute(read_dataset(dataset, root, classes, split), dataset_name(dataset, name), store, cfg,
                          shard_size, progress, verify, tuple(fusions or ()))

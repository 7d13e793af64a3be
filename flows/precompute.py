"""Flow ``precompute``: data set -> every expensive stage, in dependency order, batched, resumable."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from prefect import flow
from tqdm import tqdm

from stores import StageStore
from tasks.clip_image import clip_image
from tasks.clip_text import clip_text
from tasks.clipseg import clipseg_maps
from tasks.foreground import foreground
from tasks.image import register_images
from tasks.isnet import isnet_maps
from tasks.plan import PRECOMPUTE_STAGES, StagePlan, plan_stages
from tasks.runtime import MODEL_LOADS, open_store
from tasks.sam import sam_masks
from tasks.tiles import tiles
from zsad.config import to_jsonable
from zsad.datasets import read_dataset

from .configs import load_pipeline_config


def prepare_store(store: StageStore, plan: StagePlan) -> None:
    for stage in PRECOMPUTE_STAGES:
        store.ensure_stage(stage, plan.hashes[stage], plan.configs[stage], plan.inputs[stage], plan.weights[stage])


def dataset_name(kind: str, name: str | None) -> str:
    return name or kind


@flow(name="zsad-precompute")
def precompute(dataset: str = "synthetic", root: str = "zsad-demo/data", store: str = "zsad-store.zarr",
               config: str = "tiny", classes: list[str] | None = None, name: str | None = None,
               shard_size: int = 32, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Compute and cache IS-Net, SAM, foreground, tiles, CLIP and CLIPSeg outputs for a data set.

    Re-running skips every complete unit; an interrupted run resumes where it stopped.
    Returns small facts only: counts, stage hashes, model loads in this process.
    """
    cfg = load_pipeline_config(config, device=device)
    plan = plan_stages(cfg)
    samples = read_dataset(dataset, root, classes)
    ds = dataset_name(dataset, name)
    st = open_store(store)
    prepare_store(st, plan)
    writes_before, loads_before = st.writes, sum(MODEL_LOADS.values())
    cfg_json, hashes = to_jsonable(cfg), plan.hashes
    by_class: dict[str, list] = defaultdict(list)
    for s in samples:
        by_class[s.class_name].append(s)
    shards = [(cls, group[i: i + shard_size]) for cls, group in sorted(by_class.items())
              for i in range(0, len(group), shard_size)]
    for cls, shard in tqdm(shards, desc="precompute", unit="shard", disable=not progress):
        units = [f"{ds}/{s.class_name}/{s.split}/{s.image_id}" for s in shard]
        register_images(store, hashes["image"], [dataclasses.asdict(s) for s in shard], ds)
        isnet_maps(store, hashes, units, cfg_json)
        sam_masks(store, hashes, units, cfg_json)
        foreground(store, hashes, units, cfg_json)
        tiles(store, hashes, units, cfg_json)
        clip_image(store, hashes, units, cfg_json)
        clipseg_maps(store, hashes, units, cfg_json)
    for cls in sorted(by_class):
        clip_text(store, hashes, ds, cls, cfg_json)
    return {"dataset": ds, "n_images": len(samples), "classes": sorted(by_class), "hashes": hashes,
            "units_written": st.writes - writes_before, "models_loaded": sum(MODEL_LOADS.values()) - loads_before}

"""Stage ``clipseg``: CLIPSeg map per tile and localising prompt, (T, L, s, s) in the storage dtype."""

from __future__ import annotations

from zsad.stores import Unit, unit_key
from zsad.stores.schema import MAPS
from zsad.pixelmaps import store_maps
from zsad.prompts import localising_prompts

from .common import zsad_task
from .crops import image_crops, run_tile_stage, split_rows
from .runner import ShardJob, StageResult
from .worker import get_model


@zsad_task("clipseg")
def clipseg_maps(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc, hashes = job.cfg, job.plan.hashes
    prompts = localising_prompts(pc.prompts.localising)

    def many(store, model, items):  # tiles of several images in shared batches (images_per_batch > 1)
        crops = [image_crops(store, hashes["tiles"], unit, attrs) for unit, _, attrs in items]
        for (unit, sha, _), logits in zip(items, split_rows(model.predict_logits(sum(crops, []), prompts), crops)):
            store.write_unit(unit_key("clipseg", hashes["clipseg"], unit),
                             {MAPS: store_maps(logits, pc.map_dtype),
                              "prompt": list(prompts)}, {"prompts": list(prompts)}, source=sha)

    return run_tile_stage(job, "clipseg", units, many,
                          lambda: get_model(pc.clipseg, device=pc.device, batch_size=pc.batch_size,
                                            precision=pc.precision))

"""Stages ``clip_image`` (unit-norm CLIP tile embeddings, (T, D) float32) and, when the config
asks for patches, ``clip_patch`` (patch tokens, (T, L, gy, gx, C) float16) from the same pass."""

from __future__ import annotations

import numpy as np

from zsad.stores import Unit, unit_key
from zsad.stores.schema import EMBEDDINGS, PATCHES

from .common import zsad_task
from .crops import image_crops, run_tile_stage, split_rows
from .runner import ShardJob, StageResult
from .worker import get_model


def _writer(hashes: dict[str, str], stages: tuple[str, ...], layers: tuple[int, ...] | None):
    """The ``write_images`` of ``run_tile_stage`` writing the units of ``stages``."""

    def many(store, model, items):  # tiles of several images in shared batches (images_per_batch > 1)
        crops = [image_crops(store, hashes["tiles"], unit, attrs) for unit, _, attrs in items]
        if "clip_patch" in stages:
            emb, patches = model.encode_images_and_patches(sum(crops, []), layers)
            used = list(model.resolve_layers(layers))
        else:
            emb, patches, used = model.encode_images(sum(crops, [])), None, None
        per_image = split_rows(patches, crops) if patches is not None else [None] * len(items)
        for (unit, sha, _), e, p in zip(items, split_rows(emb, crops), per_image):
            if "clip_image" in stages:
                store.write_unit(unit_key("clip_image", hashes["clip_image"], unit), {EMBEDDINGS: e},
                                 source=sha)
            if p is not None:
                store.write_unit(unit_key("clip_patch", hashes["clip_patch"], unit),
                                 {PATCHES: np.ascontiguousarray(p)},
                                 {"layers": used, "grid": list(p.shape[2:4])}, source=sha)

    return many


@zsad_task("clip_image")
def clip_image(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc, hashes = job.cfg, job.plan.hashes

    def setup():
        return get_model(pc.clip, device=pc.device, batch_size=pc.batch_size, precision=pc.precision)

    stages = ("clip_image", "clip_patch") if pc.patches else ("clip_image",)
    out = run_tile_stage(job, "clip_image", units, _writer(hashes, stages, pc.patch_layers), setup)
    if pc.patches:  # images whose embeddings were cached before patches were asked for: patches only
        out = out.then(run_tile_stage(job, "clip_patch", out.done, _writer(hashes, ("clip_patch",), pc.patch_layers),
                                      setup))
    return out

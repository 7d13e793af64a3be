"""Stage ``sam``: SAM automatic masks, bit-packed: (N, ceil(H*W/8)) uint8."""

from __future__ import annotations

import numpy as np

from zsad.stores import Unit, unit_key
from zsad.stores.schema import BOXES

from .common import zsad_task
from .decoded import image_of
from .runner import ShardJob, StageResult, run_stage
from .worker import get_model


def pack_masks(masks_nhw: np.ndarray) -> np.ndarray:
    return np.packbits(masks_nhw.reshape(masks_nhw.shape[0], -1), axis=1)


def unpack_masks(packed: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=h * w).reshape(-1, h, w).astype(bool)


@zsad_task("sam")
def sam_masks(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc = job.cfg

    def one(store, model, unit, sha, attrs):
        out = model.generate(image_of(attrs))
        store.write_unit(unit_key("sam", job.hash("sam"), unit), {
            "masks_packed": pack_masks(out.masks_nhw),
            "scores_n": out.scores_n,
            BOXES: out.boxes_xyxy,
        }, {"height": attrs["height"], "width": attrs["width"]}, source=sha)

    return run_stage(job, "sam", units, one,
                     lambda: get_model(pc.sam, device=pc.device, generator=pc.sam_generator), decodes=True)

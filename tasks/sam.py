"""Stage ``sam``: SAM automatic masks, bit-packed: (N, ceil(H*W/8)) uint8."""

from __future__ import annotations

from zsad.stores import Unit, unit_key
from zsad.stores.schema import BOXES

from .common import zsad_task
from .decoded import image_of
from .runner import ShardJob, StageResult, run_stage
from .worker import get_model


@zsad_task("sam")
def sam_masks(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc = job.cfg

    def one(store, model, unit, sha, attrs):
        out = model.generate(image_of(attrs))
        store.write_unit(unit_key("sam", job.hash("sam"), unit), {
            "masks_packed": out.masks_packed,
            "scores_n": out.scores_n,
            BOXES: out.boxes_xyxy,
        }, {"height": attrs["height"], "width": attrs["width"]}, source=sha)

    return run_stage(job, "sam", units, one,
                     lambda: get_model(pc.sam, device=pc.device, generator=pc.sam_generator), decodes=True)

"""Stage ``isnet``: IS-Net foreground probability (uint8) per image."""

from __future__ import annotations

from zsad.stores import Unit, unit_key

from .common import zsad_task
from .decoded import image_of
from .runner import ShardJob, StageResult, run_stage
from .worker import get_model


@zsad_task("isnet")
def isnet_maps(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc = job.cfg

    def one(store, model, unit, sha, attrs):
        prob = model.predict(image_of(attrs))
        store.write_unit(unit_key("isnet", job.hash("isnet"), unit), {"prob_hw": prob}, source=sha)

    return run_stage(job, "isnet", units, one, lambda: get_model(pc.isnet, device=pc.device),
                     decodes=True)

"""Stage ``tiles``: tile boxes per foreground component."""

from __future__ import annotations

from zsad.stores import Unit, unit_key
from zsad.stores.schema import BOXES, COMPONENTS
from zsad.tiling import tile_image

from .common import zsad_task
from .runner import ShardJob, StageResult, run_stage


@zsad_task("tiles")
def tiles(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc, hashes = job.cfg, job.plan.hashes

    def one(store, _, unit, sha, attrs):
        key = unit_key("foreground", hashes["foreground"], unit)
        t = tile_image(store.read_array(key, "labels_hw"), store.read_array(key, "parts_c"), pc.tiling)
        store.write_unit(unit_key("tiles", hashes["tiles"], unit), {
            BOXES: t.boxes_xyxy, COMPONENTS: t.component_t,
            "kind_t": t.kind_t,
        }, source=sha)

    return run_stage(job, "tiles", units, one)

"""Stage ``foreground``: SAM masks filtered by IS-Net coverage, components, parts."""

from __future__ import annotations

from zsad.stores import Unit, unit_key
from zsad.foreground import extract_foreground_packed

from .common import zsad_task
from .runner import ShardJob, StageResult, run_stage


@zsad_task("foreground")
def foreground(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    pc, hashes = job.cfg, job.plan.hashes

    def one(store, _, unit, sha, attrs):
        prob = store.read_array(unit_key("isnet", hashes["isnet"], unit), "prob_hw")
        packed = store.read_array(unit_key("sam", hashes["sam"], unit), "masks_packed")
        fg = extract_foreground_packed(packed, prob, pc.foreground)
        store.write_unit(unit_key("foreground", hashes["foreground"], unit), {
            "mask_hw": fg.mask_hw, "labels_hw": fg.labels_hw,
            "parts_c": fg.parts_c, "kept_n": fg.kept_n,
            "component_n": fg.component_n,
        }, source=sha)

    return run_stage(job, "foreground", units, one)

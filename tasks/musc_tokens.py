"""Stage ``musc_tokens``: MuSc's whole-image tokens (float16, class token first) and class token
(float32) per test image, when the config asks (``PipelineConfig.musc``). MuSc scores test
images only: a train split's images (few-shot references) get none (VisA's 8,659 would take
~95 GB at ViT-L/518)."""

from __future__ import annotations

from zsad.stores import Unit, unit_key
from zsad.stores.schema import CLASS_TOKEN, TOKENS

from .common import zsad_task
from .decoded import image_of
from .runner import ShardJob, StageResult, run_stage
from .worker import get_model


@zsad_task("musc_tokens")
def musc_tokens(job: ShardJob, units: tuple[Unit, ...]) -> StageResult:
    mc = job.cfg.musc
    if mc is None:  # MuSc is off in this config: nothing to compute
        return StageResult(tuple(units))

    def setup():
        return get_model(mc.backbone, device=job.cfg.device, batch_size=job.cfg.batch_size,
                         precision=job.cfg.precision, image_size=mc.image_size)

    def group(store, model, items):
        tokens, cls = model.encode_whole([image_of(attrs) for _, _, attrs in items], mc.layers)
        for (unit, sha, _), tok, c in zip(items, tokens, cls):
            store.write_unit(unit_key("musc_tokens", job.hash("musc_tokens"), unit), {TOKENS: tok, CLASS_TOKEN: c},
                             {"layers": list(mc.layers), "grid": list(model.grid_size), "image_size": mc.image_size},
                             source=sha)

    tests = tuple(u for u in units if u.split != "train")
    out = run_stage(job, "musc_tokens", tests, lambda store, model, unit, sha, attrs: group(
        store, model, [(unit, sha, attrs)]), setup, decodes=True, compute_group=group, group=job.cfg.batch_size)
    done = set(out.done)
    return StageResult(tuple(u for u in units if u.split == "train" or u in done), out.failed)

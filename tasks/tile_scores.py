"""The tile-scoring detectors of an aggregation run (zero-shot; few-shot and mutual add their
per-image patch distances from the class's context): one image under every such variant of the
run, from its cached evidence. Per image it reads its ``fused`` unit per fusion method (made on
first need, ``zsad.tasks.fused``) and its CLIP embeddings, plans the sweep's distinct maps once
(``zsad.aggregate.plan_maps``), pastes each distinct map once inside the tiles' window and, when
evaluating, streams it into the pixel metrics shared by every variant of its group, against a
ground truth prepared once per image."""

from __future__ import annotations

import functools

from zsad.aggregate import ImageEvidence, ImageSweep, TextEvidence, plan_maps, sweep_image
from zsad.bins import CellTruth, GroundTruth
from zsad.datasets import ground_truth
from zsad.stores import StageStore, Unit, class_key

from .aggregate_run import AggregateAttrs, AggregateRun, ChunkResult, VariantJob, write_result
from .fused import ImageFacts, read_evidence
from .plan import PATCH_STAGE


@functools.lru_cache(maxsize=64)
def _text(store: StageStore, key: str) -> TextEvidence:
    arrays, attrs = store.read_unit(key)
    return TextEvidence(
        arrays["emb_pd"], arrays["anomalous_p"], arrays["seed_extension_p"], float(attrs["logit_scale"])
    )


def compute_sweep(run: AggregateRun, unit: Unit, facts: ImageFacts, jobs: list[VariantJob], pixels: bool = True
                  ) -> tuple[ImageEvidence, ImageSweep]:
    """One image under ``jobs``, in memory, from its cached evidence (``pixels=False``: scores only)."""
    store, cfgs = run.store, [j.config for j in jobs]
    patches = []
    for job in jobs:
        ctx = run.context(job, unit)
        if job.config.patch is not None and ctx is None:
            raise ValueError(f"{unit.path}: a {job.config.mode} variant needs its class's reference set or batch "
                             "(zsad.tasks.contexts.variant_contexts; run_variants builds them)")
        patches.append(None if job.config.patch is None else
                       ctx.scores_for(store, run.plan.hashes[PATCH_STAGE], unit, job.config))
    evidence = read_evidence(store, run.plan, unit, [c.fusion for c in cfgs], facts)
    text = _text(store, class_key("clip_text", run.plan.hashes["clip_text"], unit.dataset, unit.class_name))
    return evidence, sweep_image(evidence, text, cfgs, groups=plan_maps(cfgs), patch_tyx=patches, pixels=pixels)


def zero_shot_of(run: AggregateRun, job: VariantJob, unit: Unit, facts: ImageFacts):
    """The image's zero-shot sample score and (H, W) map under ``job``'s zero-shot fields
    (a hybrid averages them with its own)."""
    zs = job.config.with_patch(None)
    _, sweep = compute_sweep(run, unit, facts, [VariantJob(run.plan.aggregate_hash(zs), zs)])
    return float(sweep.sample_scores[0]), sweep.aggregated(0).pixel_map_hw


def tile_maps(run: AggregateRun, unit: Unit, facts: ImageFacts, jobs: list[VariantJob]) -> list:
    """Each job's (H, W) float32 map of the image, computed now."""
    sweep = compute_sweep(run, unit, facts, jobs)[1]
    return [sweep.aggregated(i).pixel_map_hw for i in range(len(jobs))]


def score_tiles(run: AggregateRun, unit: Unit, facts: ImageFacts, todo: list[tuple[VariantJob, str, bool]],
                out: ChunkResult) -> None:
    """The image under ``todo`` (job, source, write): units written, rows and metrics in ``out``."""
    evaluate = run.evaluate and facts.label >= 0
    on_device = run.device is not None and evaluate and not run.save_maps
    evidence, sweep = compute_sweep(run, unit, facts, [job for job, _, _ in todo], pixels=not on_device)
    for i, (job, source, write) in enumerate(todo):
        if write:
            attrs = AggregateAttrs(sample_score=sweep.sample_scores[i], label=facts.label, has_map=run.save_maps,
                                   tile_scores=sweep.tile_scores[i].tolist(),
                                   component_scores=sweep.component_scores[i].tolist())
            write_result(run.store, job=job, unit=unit, attrs=attrs, source=source,
                         map_hw=sweep.aggregated(i).pixel_map_hw if run.save_maps else None)
        out.add(run, job, unit, facts, sweep.sample_scores[i], write)
    if not evaluate:
        return
    gt, layouts = GroundTruth.from_mask(facts.ground_truth()), {}
    if on_device:
        _add_on_device(run, unit, facts, evidence, sweep, [job.config for job, _, _ in todo], gt, out)
        return
    for group, window in zip(sweep.groups, sweep.windows):  # the mask laid out once for all the image's maps
        if window.boxes not in layouts:
            layouts[window.boxes] = CellTruth.layout(gt, window.boxes)
        out.pixel_side(run, group.key, unit).add_pixels(facts.label, layouts[window.boxes], window)


def _add_on_device(run: AggregateRun, unit: Unit, facts: ImageFacts, evidence, sweep: ImageSweep,
                   cfgs, gt: GroundTruth, out: ChunkResult) -> None:
    """The image's maps pasted and counted on ``run.device`` (``zsad.torchpixels``)."""
    import torch

    from zsad.torchpixels import TorchPixels, TorchTruth, sweep_cells
    device = torch.device(run.device)
    layouts = {}
    for group, cells in zip(sweep.groups, sweep_cells(evidence, sweep, cfgs, device)):
        boxes = tuple(box for box, _ in cells)
        if boxes not in layouts:
            layouts[boxes] = TorchTruth.of(CellTruth.layout(gt, boxes), device)
        out.device_pixels.setdefault((group.key, unit.class_name), TorchPixels(device)).add(
            facts.label, layouts[boxes], cells)

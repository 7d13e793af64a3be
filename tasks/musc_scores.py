"""The MuSc detector in an aggregation run: the per-class batch step (the cached nearest-patch
distances, each image's grid map and raw score, RsCIN over the class) makes a ``MuscContext``
per variant and class; each image is then finished through the same chunks as every other
detector (``score_musc``: its map at the size the evaluation needs, the seed hybrid, its unit,
its metrics), under zsad's protocol (maps at each image's size) or MuSc's (``run.square``: maps
and masks at the token stage's square ``image_size``, as MuSc evaluates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dask
import numpy as np
from PIL import Image

from zsad.aggregate import map_key
from zsad.datasets import ground_truth
from zsad.musc import image_scores, rescore, upsample
from zsad.musc_maps import full_size, protocol_mask, row_scores, with_foreground
from zsad.pixelmaps import resize_map
from zsad.stores import Unit, unit_key
from zsad.variants import Musc

from .aggregate_run import AggregateAttrs, AggregateRun, ChunkResult, VariantJob, write_result
from .fused import ImageFacts
from .musc import MuscBatch, class_batches, class_tokens, nearest_rows, read_rows
from .patches import image_records
from .tile_scores import zero_shot_of


@dataclass(frozen=True)
class MuscContext:
    """A MuSc variant's class after its batch step. Unit path -> its (g, g) grid map, its
    batch's digest, its raw image score (before RsCIN) and its final one (after)."""

    maps: dict[str, np.ndarray]
    batches: dict[str, str]
    raw: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def source_of(self, unit: Unit) -> str:
        if unit.path not in self.batches:
            raise ValueError(f"{unit.path}: not in the MuSc batch this context was made from")
        return self.batches[unit.path]


def _foreground(run: AggregateRun, unit: Unit, rule: str) -> dict[str, np.ndarray]:
    if rule == "restrict":
        return {"mask_hw": run.store.read_array(unit_key("foreground", run.plan.hashes["foreground"], unit), "mask_hw")}
    if rule == "weight":
        return {"prob_hw": run.store.read_array(unit_key("isnet", run.plan.hashes["isnet"], unit), "prob_hw")}
    return {}


def token_side(run: AggregateRun) -> int:
    """The token stage's square input side (MuSc's ``image_size``)."""
    return int(run.plan.configs["musc_tokens"]["image_size"])


def musc_map(run: AggregateRun, unit: Unit, facts: ImageFacts, map_gg: np.ndarray, musc: Musc,
             size_hw: tuple[int, int]) -> np.ndarray:
    """The variant's MuSc map of an image at ``size_hw`` (its foreground hybrid applied)."""
    square = size_hw[0] == size_hw[1] == token_side(run)
    m = upsample(map_gg[None], size_hw[0])[0].astype(np.float32) if square and size_hw != facts.image_hw \
        else full_size(map_gg, size_hw)
    fg = {k: (v if v.shape == size_hw else np.asarray(Image.fromarray(v).resize(size_hw[::-1], Image.NEAREST)))
          for k, v in _foreground(run, unit, musc.foreground).items()}
    return with_foreground(m, musc.foreground, **fg)


def raw_score(run: AggregateRun, unit: Unit, facts: ImageFacts, map_gg: np.ndarray, musc: Musc,
              map_hw: np.ndarray | None = None) -> float:
    """The image score before RsCIN: MuSc's, the maximum of the grid map upsampled to the token
    stage's size; a hybrid's, the maximum of its full-size map (``map_hw`` when already made)."""
    if musc.foreground == "none":
        return float(image_scores(map_gg[None], token_side(run))[0])
    return float((map_hw if map_hw is not None else musc_map(run, unit, facts, map_gg, musc, facts.image_hw)).max())


def score_members(run: AggregateRun, jobs: list[VariantJob], batch: MuscBatch, kept: dict
                  ) -> dict[str, list[tuple[Unit, np.ndarray, float]]]:
    """One Dask task of the batch step: each image of ``batch`` under each job, its grid map and
    raw score (variant hash -> [(unit, (g, g) map, raw score)] in batch order). Each image's
    distances are read once for all the jobs."""
    out: dict[str, list] = {job.variant_hash: [] for job in jobs}
    for i, unit in enumerate(batch.units):
        facts, cache = run.facts(unit), {}
        for job in jobs:
            musc = job.config.patch
            rows = read_rows(run.store, run.plan, musc, batch, unit, kept, cache)
            g = int(round(rows[0].shape[-1] ** 0.5))
            grid = row_scores(rows, i, musc.musc_fraction, musc.musc_layers).reshape(g, g)
            out[job.variant_hash].append((unit, grid, raw_score(run, unit, facts, grid, musc)))
    return out


def musc_contexts(run: AggregateRun, jobs: list[VariantJob], units: list[Unit], dataset: str, *,
                  scheduler: str | Callable = "synchronous", device: str = "cpu"
                  ) -> dict[tuple[str, str], MuscContext]:
    """The batch step of every MuSc variant of ``jobs`` over ``units`` (their distances computed
    first where missing; one Dask task per batch, then RsCIN per class):
    ``(variant hash, class) -> MuscContext``."""
    if not jobs:
        return {}
    if not run.plan.configs.get("musc_tokens"):
        raise ValueError("MuSc variants need the musc_tokens stage: use a config that sets `musc` (musc, musc-b16, "
                         "musc-b16-512, musc-tiny) for precompute and for this command")
    records = image_records(run.store, run.plan.hashes["image"], units)
    by_divide: dict[int, list[VariantJob]] = {}
    for job in jobs:  # variants that compare the same batches read each image's distances once
        by_divide.setdefault(job.config.patch.divide_num, []).append(job)
    out = {}
    for divide_num, group in by_divide.items():
        batches = class_batches(records, units, divide_num)
        kept: dict = {}  # rows computed and not stored (read-only), by (r, same_position, batch, unit)
        for job in group:
            kept.update(nearest_rows(run.store, run.plan, job.config.patch, batches, records, scheduler,
                                     device=device, known=kept))
        tasks = [dask.delayed(score_members)(run, group, batch, kept) for batch in batches]
        local = scheduler in ("synchronous", "sync", "threads", "processes")
        done = dask.compute(*tasks, scheduler=scheduler if local else "synchronous")
        for job in group:
            out.update(_rescored(run, job, batches, [d[job.variant_hash] for d in done], dataset))
    return out


def _rescored(run: AggregateRun, job: VariantJob, batches: list[MuscBatch], scored: list[list], dataset: str
              ) -> dict[tuple[str, str], MuscContext]:
    """RsCIN over each class's images (its batches together): the job's contexts."""
    by_class: dict[str, list] = {}
    digests = {}
    for batch, members in zip(batches, scored):
        by_class.setdefault(batch.class_name, []).extend(members)
        digests.update({u.path: batch.digest for u, _, _ in members})
    out = {}
    for cls, members in sorted(by_class.items()):
        cls_tokens = class_tokens(run.store, run.plan.hashes["musc_tokens"], [u for u, _, _ in members])
        final = rescore(np.array([raw for _, _, raw in members]), cls_tokens, job.config.patch.k_for(dataset))
        out[(job.variant_hash, cls)] = MuscContext(
            {u.path: grid for u, grid, _ in members}, {u.path: digests[u.path] for u, _, _ in members},
            {u.path: raw for u, _, raw in members}, {u.path: float(s) for (u, _, _), s in zip(members, final)})
    return out


def musc_image_map(run: AggregateRun, job: VariantJob, unit: Unit, facts: ImageFacts, ctx: MuscContext,
                   size_hw: tuple[int, int], zs_map: np.ndarray | None = None) -> np.ndarray:
    """The variant's (size) float32 map of the image: MuSc's, averaged with the zero-shot map
    (``combine=mean``; ``zs_map`` when already made)."""
    m = musc_map(run, unit, facts, ctx.maps[unit.path], job.config.patch, size_hw)
    if job.config.patch.combine == "mean":
        zs_map = zero_shot_of(run, job, unit, facts)[1] if zs_map is None else zs_map
        m = (m + resize_map(zs_map, size_hw)) / 2
    return m.astype(np.float32)


def musc_maps(run: AggregateRun, unit: Unit, facts: ImageFacts, jobs: list[VariantJob]) -> list[np.ndarray]:
    """Each job's (H, W) float32 map of the image, computed now from its context."""
    for job in jobs:
        ctx = run.context(job, unit)
        if ctx is None:
            raise ValueError(f"{unit.path}: a MuSc variant's map needs its class's context (run_variants makes it)")
        ctx.source_of(unit)  # a clear error for an image of another batch
    return [musc_image_map(run, job, unit, facts, run.context(job, unit), facts.image_hw) for job in jobs]


def score_musc(run: AggregateRun, unit: Unit, facts: ImageFacts, todo: list[tuple[VariantJob, str, bool]],
               out: ChunkResult) -> None:
    """The image under MuSc's ``todo`` (job, source, write): its final score (averaged with the
    zero-shot one for ``combine=mean``), its unit, its row and metrics."""
    evaluate = run.evaluate and facts.label >= 0
    for job, source, write in todo:
        ctx = run.context(job, unit)
        score, zs_map = ctx.scores[unit.path], None
        if job.config.patch.combine == "mean":
            zs_score, zs_map = zero_shot_of(run, job, unit, facts)
            score = (zs_score + score) / 2
        maps: dict[tuple[int, int], np.ndarray] = {}  # by size: the full-size map is made once for both uses

        def map_at(size: tuple[int, int]) -> np.ndarray:
            if size not in maps:
                maps[size] = musc_image_map(run, job, unit, facts, ctx, size, zs_map)
            return maps[size]
        if write:
            attrs = AggregateAttrs(sample_score=score, label=facts.label, has_map=run.save_maps,
                                   musc_score=ctx.raw[unit.path])
            write_result(run.store, job=job, unit=unit, attrs=attrs, source=source,
                         map_hw=map_at(facts.image_hw) if run.save_maps else None)
        out.add(run, job, unit, facts, score, write)
        if evaluate:
            size = (token_side(run),) * 2 if run.square else facts.image_hw
            mask = protocol_mask(facts.mask_path, size[0], facts.orientation) if run.square else facts.ground_truth(size)
            out.pixel_side(run, map_key(job.config), unit).add_map(facts.label, mask, map_at(size))

"""MuSc variants of an aggregation run: maps and image scores from the cached distances, RsCIN
over each class, the seed hybrids, the ``aggregate`` units, and (evaluating) the metric
accumulators, under zsad's protocol (maps at each image's size) or MuSc's (``musc``: maps and
masks at the token stage's square ``image_size``, as MuSc evaluates)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from zsad.evaluation import ClassEvaluator
from zsad.musc import image_scores, rescore, upsample
from zsad.musc_maps import full_size, protocol_mask, row_scores, with_foreground
from zsad.pixelmaps import resize_map
from zsad.datasets import ground_truth
from zsad.stores import Unit, unit_key
from zsad.stores.schema import PIXEL_MAP
from zsad.variants import PROTOCOLS, Musc

from .aggregate import AggregateRun, Row, VariantJob, compute_sweep
from .fused import ImageFacts
from .musc import MuscBatch, class_batches, class_tokens, nearest_rows, read_rows
from .patches import image_records


@dataclass(frozen=True)
class MuscContext:
    """What drawing a MuSc variant's maps of one class needs (report panels): unit path -> its
    (g, g) grid map, and unit path -> its batch's digest."""

    maps: dict[str, np.ndarray]
    batches: dict[str, str]


@dataclass
class MuscOutcome:
    """Rows of every MuSc variant; ``(variant hash, class)`` -> its ``ClassEvaluator``
    (evaluating) and its ``MuscContext``."""

    rows: list[Row] = field(default_factory=list)
    evaluators: dict[tuple[str, str], ClassEvaluator] = field(default_factory=dict)
    contexts: dict[tuple[str, str], MuscContext] = field(default_factory=dict)


@dataclass(frozen=True)
class Scored:
    """One image of a MuSc variant: its grid map, facts, raw and final image scores."""

    unit: Unit
    facts: ImageFacts
    map_gg: np.ndarray
    batch_digest: str
    raw: float = 0.0
    score: float = 0.0


def _foreground(run: AggregateRun, unit: Unit, rule: str) -> dict[str, np.ndarray]:
    if rule == "restrict":
        return {"mask_hw": run.store.read_array(unit_key("foreground", run.plan.hashes["foreground"], unit), "mask_hw")}
    if rule == "weight":
        return {"prob_hw": run.store.read_array(unit_key("isnet", run.plan.hashes["isnet"], unit), "prob_hw")}
    return {}


def musc_map(run: AggregateRun, s: Scored, musc: Musc, size_hw: tuple[int, int]) -> np.ndarray:
    """The variant's MuSc map of ``s`` at ``size_hw`` (its foreground hybrid applied)."""
    square = size_hw[0] == size_hw[1] == int(run.plan.configs["musc_tokens"]["image_size"])
    m = upsample(s.map_gg[None], size_hw[0])[0].astype(np.float32) if square and size_hw != s.facts.image_hw \
        else full_size(s.map_gg, size_hw)
    fg = {k: (v if v.shape == size_hw else np.asarray(Image.fromarray(v).resize(size_hw[::-1], Image.NEAREST)))
          for k, v in _foreground(run, s.unit, musc.foreground).items()}
    return with_foreground(m, musc.foreground, **fg)


def score_batch(run: AggregateRun, musc: Musc, batch: MuscBatch, kept: dict) -> list[Scored]:
    """Grid maps and raw image scores of a batch's images (before RsCIN)."""
    return [score_unit(run, musc, batch, i, kept) for i in range(len(batch.units))]


def score_unit(run: AggregateRun, musc: Musc, batch: MuscBatch, i: int, kept: dict, facts: ImageFacts | None = None,
               cache: dict | None = None) -> Scored:
    """Image ``i`` of ``batch``: its grid map and raw image score (before RsCIN); ``cache``: the
    image's rows read for the sweep's other variants."""
    unit = batch.units[i]
    rows = read_rows(run.store, run.plan, musc, batch, unit, kept, cache)
    g = int(round(rows[0].shape[-1] ** 0.5))
    map_gg = row_scores(rows, i, musc.musc_fraction, musc.musc_layers).reshape(g, g)
    facts = facts or ImageFacts.from_attrs(run.store.read_attrs(unit_key("image", run.plan.hashes["image"], unit)))
    s = Scored(unit, facts, map_gg, batch.digest)
    return dataclasses.replace(s, raw=raw_score(run, s, musc))


def raw_score(run: AggregateRun, s: Scored, musc: Musc, map_hw: np.ndarray | None = None) -> float:
    """The image score before RsCIN: MuSc's, the maximum of the grid map upsampled to the token
    stage's size; a hybrid's, the maximum of its full-size map (``map_hw`` when already made)."""
    if musc.foreground == "none":
        return float(image_scores(s.map_gg[None], int(run.plan.configs["musc_tokens"]["image_size"]))[0])
    return float((map_hw if map_hw is not None else musc_map(run, s, musc, s.facts.image_hw)).max())


def zero_shot_of(run: AggregateRun, job: VariantJob, s: Scored) -> tuple[float, np.ndarray]:
    zs = job.config.with_patch(None)
    _, sweep = compute_sweep(run, s.unit, s.facts, [VariantJob(run.plan.aggregate_hash(zs), zs)])
    return float(sweep.sample_scores[0]), sweep.aggregated(0).pixel_map_hw


def run_musc_variants(run: AggregateRun, jobs: list[VariantJob], units: list[Unit], dataset: str, *,
                      scheduler: str | Callable = "synchronous", protocol: str = "zsad", device: str = "cpu"
                      ) -> MuscOutcome:
    """Every MuSc variant of ``jobs`` over ``units`` (their distances computed first where missing)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"evaluation protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    out = MuscOutcome()
    if not jobs:
        return out
    if not run.plan.configs.get("musc_tokens"):
        raise ValueError("MuSc variants need the musc_tokens stage: use a config that sets `musc` (musc, musc-b16, "
                         "musc-b16-512, musc-tiny) for precompute and for this command")
    records = image_records(run.store, run.plan.hashes["image"], units)
    by_divide: dict[int, list[VariantJob]] = {}
    for job in jobs:  # variants that compare the same batches read each image's distances once
        by_divide.setdefault(job.config.patch.divide_num, []).append(job)
    for divide_num, group in by_divide.items():
        batches = class_batches(records, units, divide_num)
        kept: dict = {}  # rows computed and not stored (read-only), by (r, same_position, batch, unit)
        for job in group:
            kept.update(nearest_rows(run.store, run.plan, job.config.patch, batches, records, scheduler,
                                     device=device, known=kept))
        scored: dict[tuple[str, str], list[Scored]] = {}
        for batch in batches:
            for i, unit in enumerate(batch.units):
                facts = ImageFacts.from_attrs(run.store.read_attrs(unit_key("image", run.plan.hashes["image"], unit)))
                cache: dict = {}  # this image's rows, read once for every variant
                for job in group:
                    scored.setdefault((job.variant_hash, batch.class_name), []).append(
                        score_unit(run, job.config.patch, batch, i, kept, facts, cache))
        for job in group:
            _rescore_and_finish(run, job, {cls: v for (vh, cls), v in scored.items() if vh == job.variant_hash},
                                dataset, protocol, out)
    return out


def _rescore_and_finish(run: AggregateRun, job: VariantJob, by_class: dict[str, list[Scored]], dataset: str,
                        protocol: str, out: MuscOutcome) -> None:
    """RsCIN over each class's images, then each image written and evaluated."""
    musc: Musc = job.config.patch
    for cls, scored in sorted(by_class.items()):
        cls_tokens = class_tokens(run.store, run.plan.hashes["musc_tokens"], [s.unit for s in scored])
        final = rescore(np.array([s.raw for s in scored]), cls_tokens, musc.k_for(dataset))
        out.contexts[(job.variant_hash, cls)] = MuscContext({s.unit.path: s.map_gg for s in scored},
                                                            {s.unit.path: s.batch_digest for s in scored})
        for s, score in zip(scored, final):
            _finish(run, job, musc, dataclasses.replace(s, score=float(score)), protocol, out)


def musc_pixel_map(run: AggregateRun, agg, unit: Unit, context: MuscContext) -> np.ndarray:
    """One image's (H, W) float32 map of MuSc variant ``agg`` from its class's context."""
    if unit.path not in context.maps:
        raise ValueError(f"{unit.path}: not in the MuSc batch this context was made from")
    facts = ImageFacts.from_attrs(run.store.read_attrs(unit_key("image", run.plan.hashes["image"], unit)))
    s = Scored(unit, facts, context.maps[unit.path], context.batches[unit.path])
    m = musc_map(run, s, agg.patch, facts.image_hw)
    if agg.patch.combine == "mean":
        m = (m + zero_shot_of(run, VariantJob(run.plan.aggregate_hash(agg), agg), s)[1]) / 2
    return m.astype(np.float32)


def _finish(run: AggregateRun, job: VariantJob, musc: Musc, s: Scored, protocol: str, out: MuscOutcome) -> None:
    """One image of one variant: combined with the seed (``combine=mean``), written, evaluated."""
    evaluate = run.evaluate and s.facts.label >= 0
    score, zs_map = s.score, None
    if musc.combine == "mean":
        zs_score, zs_map = zero_shot_of(run, job, s)
        score = (zs_score + score) / 2
    key = unit_key("aggregate", job.variant_hash, s.unit)
    source = f"{s.facts.sha256}+{s.batch_digest}"
    write = not run.store.read_only and (run.overwrite or run.save_maps or not run.store.is_complete(key, source))
    maps = {}
    if evaluate or (write and run.save_maps):
        size = (int(run.plan.configs["musc_tokens"]["image_size"]),) * 2 if protocol == "musc" else s.facts.image_hw
        m = musc_map(run, s, musc, size)
        if zs_map is not None:
            m = (m + resize_map(zs_map, size)) / 2
        maps[size] = m
    if write:
        full = maps.get(s.facts.image_hw)
        arrays = {PIXEL_MAP: (full if full is not None else musc_map(run, s, musc, s.facts.image_hw)).astype(np.float16)} \
            if run.save_maps else {}
        run.store.write_unit(key, arrays, {"sample_score": score, "musc_score": s.raw, "label": s.facts.label,
                                           "has_map": run.save_maps}, source=source)
    out.rows.append(Row(job.variant_hash, s.unit, score, s.facts.label, write))
    if evaluate:
        ev = out.evaluators.setdefault((job.variant_hash, s.unit.class_name), ClassEvaluator())
        (size, m), = maps.items()
        mask = protocol_mask(s.facts.mask_path, size[0]) if protocol == "musc" else \
            ground_truth(s.facts.mask_path, s.facts.image_hw)
        ev.update(s.facts.label, score, mask, m)

"""New images against a cached MuSc batch (``zsad predict --against``, the nightly flow): each
new image is scored against the class's cached images as one more member of that batch, without
recomputing the batch's own scores.

Per new image: its distances to the N batch images (``zsad.musc.score_against_batch``, the
batch's features computed once for all new images; k = int(fraction x N)), its map and raw score as the batch's images get theirs, and RsCIN over
the batch plus itself (the batch's raw scores and class tokens as cached; only the new image's
re-scored value is kept). New images are not compared with each other, so each one's score is
independent of what else arrived with it.
"""

from __future__ import annotations

import numpy as np

from zsad.config import AggregateConfig
from zsad.musc import rescore, score_against_batch
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import TOKENS

from .aggregate_run import AggregateAttrs, AggregateRun, VariantJob, unit_source, write_result
from .musc import batch_tokens, class_batches, class_tokens, nearest_rows
from .musc_scores import MuscContext, musc_image_map, musc_map, raw_score, score_members
from .patches import image_records
from .plan import StagePlan
from .tile_scores import zero_shot_of


def score_against(store: StageStore, plan: StagePlan, agg: AggregateConfig, new: list[Unit], batch: list[Unit],
                  dataset: str, device: str = "cpu") -> int:
    """Score ``new`` (units of one class, their tokens cached) against the cached ``batch`` of the
    same class (data set ``dataset``); writes each new image's ``aggregate`` unit with its
    full-size map. Returns the number written."""
    musc, job = agg.patch, VariantJob(plan.aggregate_hash(agg), agg)
    classes = {u.class_name for u in [*new, *batch]}
    if len(classes) != 1 or not batch:
        raise ValueError(f"MuSc against a batch: the new images and the batch must be of one class with at least one "
                         f"cached image; got classes {sorted(classes)} and a batch of {len(batch)}")
    records = image_records(store, plan.hashes["image"], batch)
    (cached,) = class_batches(records, batch, 1)
    run = AggregateRun(store, plan, (job,), save_maps=True)
    kept = nearest_rows(store, plan, musc, [cached], records, device=device)  # the batch's own distances, once
    own = [raw for _, _, raw in score_members(run, [job], cached, kept)[job.variant_hash]]
    h = plan.hashes["musc_tokens"]
    grids = score_against_batch(np.stack([store.read_array(unit_key("musc_tokens", h, u), TOKENS) for u in new]),
                                batch_tokens(store, h, cached), r_list=musc.r_list, fraction=musc.musc_fraction,
                                layers=musc.musc_layers, same_position=musc.same_position, device=device)
    cls_b, cls_new = class_tokens(store, h, cached.units), class_tokens(store, h, new)
    for unit, grid, cls in zip(new, grids, cls_new):
        facts = run.facts(unit)
        m = musc_map(run, unit, facts, grid, musc, facts.image_hw)
        raw = raw_score(run, unit, facts, grid, musc, m)
        score = float(rescore(np.array(own + [raw]), np.concatenate([cls_b, cls[None]]), musc.k_for(dataset))[-1])
        ctx = MuscContext({unit.path: grid}, {unit.path: cached.digest}, {unit.path: raw}, {unit.path: score})
        if musc.combine == "mean":
            zs_score, zs_map = zero_shot_of(run, job, unit, facts)
            score, m = (zs_score + score) / 2, musc_image_map(run, job, unit, facts, ctx, facts.image_hw, zs_map)
        attrs = AggregateAttrs(sample_score=score, label=facts.label, has_map=True, musc_score=raw, batch=dataset,
                               batch_images=len(cached.units))
        write_result(store, job=job, unit=unit, attrs=attrs, map_hw=m, source=unit_source(facts, ctx, unit))
    store.index.flush(("aggregate", "musc"))
    return len(new)

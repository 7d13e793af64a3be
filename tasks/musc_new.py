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
from zsad.stores.schema import PIXEL_MAP, TOKENS

from .aggregate import AggregateRun, VariantJob
from .fused import ImageFacts
from .musc import batch_tokens, class_batches, class_tokens, nearest_rows
from .musc_variants import Scored, musc_map, raw_score, score_batch, zero_shot_of
from .patches import image_records
from .plan import StagePlan


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
    own = score_batch(run, musc, cached, kept)
    h = plan.hashes["musc_tokens"]
    grids = score_against_batch(np.stack([store.read_array(unit_key("musc_tokens", h, u), TOKENS) for u in new]),
                                batch_tokens(store, h, cached), r_list=musc.r_list, fraction=musc.musc_fraction,
                                layers=musc.musc_layers, same_position=musc.same_position, device=device)
    cls_b, cls_new = class_tokens(store, h, cached.units), class_tokens(store, h, new)
    for unit, grid, cls in zip(new, grids, cls_new):
        facts = ImageFacts.from_attrs(store.read_attrs(unit_key("image", plan.hashes["image"], unit)))
        s = Scored(unit, facts, grid, cached.digest)
        m = musc_map(run, s, musc, facts.image_hw)
        raw = raw_score(run, s, musc, m)
        score = float(rescore(np.array([o.raw for o in own] + [raw]), np.concatenate([cls_b, cls[None]]),
                              musc.k_for(dataset))[-1])
        if musc.combine == "mean":
            zs_score, zs_map = zero_shot_of(run, job, s)
            score, m = (zs_score + score) / 2, (m + zs_map) / 2
        store.write_unit(unit_key("aggregate", job.variant_hash, unit), {PIXEL_MAP: m.astype(np.float16)},
                         {"sample_score": score, "musc_score": raw, "label": facts.label, "has_map": True,
                          "batch": dataset, "batch_images": len(cached.units)},
                         source=f"{facts.sha256}+{cached.digest}")
    store.index.flush(("aggregate", "musc"))
    return len(new)

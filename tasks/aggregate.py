"""Stage ``aggregate``: every detector's variants of a run, image by image, from the store only.

One engine for all detectors: a chunk of images (one Dask task) goes image by image; per image
the variants not yet complete (all of them when evaluating) are handed to their detector's
scorer (``SCORERS``, by ``Detector.scoring``), which writes their units through the one writer
(``zsad.tasks.aggregate_run.write_result``) and adds rows and metric accumulators to the
chunk's ``ChunkResult``. What a detector needs beyond the image (references, the class's batch,
MuSc's batch step) was made once per class before the chunks (``zsad.tasks.contexts``). The
functions are plain Python so Dask (threads, processes, a distributed cluster) runs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from zsad.stores import StageStore, Unit, unit_key

from .aggregate_run import AggregateRun, ChunkResult, Row, VariantJob, unit_source
from .plan import StagePlan
from .worker import begin_run

__all__ = ["AggregateRun", "ChunkResult", "Row", "VariantJob", "aggregate_unit", "aggregate_units", "merge_chunks",
           "pixel_map"]


@dataclass(frozen=True)
class Scorer:
    """How the engine scores one image under the variants of one kind of scoring.

    Attributes:
        score: ``(run, unit, facts, todo, out)``: ``todo`` holds (job, source, write); writes
            the units to write, adds rows and metrics to ``out``.
        maps: ``(run, unit, facts, jobs)`` -> each job's (H, W) float32 map, computed now.
    """

    score: Callable
    maps: Callable


def _tiles() -> Scorer:
    from .tile_scores import score_tiles, tile_maps
    return Scorer(score_tiles, tile_maps)


def _batch() -> Scorer:
    from .musc_scores import musc_maps, score_musc  # torch-based: only runs with MuSc variants import it
    return Scorer(score_musc, musc_maps)


def _tokens() -> Scorer:
    from .dino_scores import dino_maps, score_dino
    return Scorer(score_dino, dino_maps)


SCORERS: dict[str, Callable[[], Scorer]] = {"tile": _tiles, "patch": _tiles, "batch": _batch,  # Detector.scoring
                                            "tokens": _tokens}


def pixel_map(store: StageStore, plan: StagePlan, agg, unit: Unit, context=None) -> np.ndarray:
    """One image's (H, W) float32 anomaly map for variant ``agg``, computed now (nothing is
    written); ``context``: the variant's context for the image's class (few-shot, mutual, MuSc)."""
    job = VariantJob(plan.aggregate_hash(agg), agg)
    contexts = {} if context is None else {(job.variant_hash, unit.class_name): context}
    run = AggregateRun(store.read_only_view(), plan, (job,), contexts)
    return SCORERS[agg.detector.scoring]().maps(run, unit, run.facts(unit), [job])[0]


def aggregate_unit(run: AggregateRun, unit: Unit, out: ChunkResult, listed: dict[str, set[str]] | None = None
                   ) -> None:
    """One image for every variant of ``run`` not yet complete (all of them when evaluating):
    rows, units written, and (labelled images, ``run.evaluate``) metric accumulators in ``out``."""
    store = run.store
    facts = run.facts(unit)
    evaluate = run.evaluate and facts.label >= 0
    todo: dict[str, list[tuple[VariantJob, str, bool]]] = {}  # scoring -> (job, source, write)
    for job in run.variants:
        source = unit_source(facts, run.context(job, unit), unit)
        attrs = None if run.overwrite else store.complete_attrs(unit_key("aggregate", job.variant_hash, unit), source,
                                                                listed)
        done = attrs is not None and (not run.save_maps or attrs.get("has_map"))
        if done and not evaluate:
            out.rows.append(Row(job.variant_hash, unit, attrs["sample_score"], facts.label, False))
        else:
            todo.setdefault(job.config.detector.scoring, []).append((job, source, not done and not store.read_only))
    for scoring, jobs in todo.items():
        SCORERS[scoring]().score(run, unit, facts, jobs, out)


_LISTED: dict[str, dict[str, set[str]]] = {}


def _listings(run_id: str) -> dict[str, set[str]]:
    """The run's folder listings in this process (``StageStore.complete_attrs``'s memo): one
    listing per variant folder and process answers for every missing unit of the run."""
    if run_id not in _LISTED:
        _LISTED.clear()
        _LISTED[run_id] = {}
    return _LISTED[run_id]


def aggregate_units(run: AggregateRun, units: list[Unit]) -> ChunkResult:
    """A chunk of images (one Dask task); pixels counted on a device come back to the host here."""
    begin_run(run.store, run.run_id)
    out, listed = ChunkResult(), _listings(run.run_id)
    for unit in units:
        aggregate_unit(run, unit, out, listed)
    for key, acc in out.device_pixels.items():
        out.pixels[key] = acc.to_evaluator(run.pixel_size)
    out.device_pixels = {}
    if not run.store.read_only and os.getpid() != run.owner_pid:  # the units written, into the index
        run.store.index.flush(("aggregate", "fused"))
    return out


def merge_chunks(a: ChunkResult, b: ChunkResult) -> ChunkResult:
    return a.merge(b)

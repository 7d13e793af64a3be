"""The per-class step of each detector that needs one, before an aggregation run's chunks: the
few-shot references' memory, the tile-mutual batch's scores (``zsad.tasks.patches``), MuSc's
batch step (``zsad.tasks.musc_scores``) and AnomalyDINO's memory or batch (``zsad.tasks.dino_scores``),
by ``Detector.scoring``."""

from __future__ import annotations

from typing import Any, Callable

from zsad.stores import Unit

from .aggregate_run import AggregateRun, VariantJob


def _patch(run: AggregateRun, jobs: list[VariantJob], units: list[Unit], dataset: str, scheduler: Any, device: str
           ) -> dict[tuple[str, str], Any]:
    from .patches import patch_contexts
    return patch_contexts(run.store, run.plan, [(j.variant_hash, j.config) for j in jobs], units, dataset, scheduler)


def _batch(run: AggregateRun, jobs: list[VariantJob], units: list[Unit], dataset: str, scheduler: Any, device: str
           ) -> dict[tuple[str, str], Any]:
    from .musc_scores import musc_contexts
    return musc_contexts(run, jobs, units, dataset, scheduler=scheduler, device=device)


def _tokens(run: AggregateRun, jobs: list[VariantJob], units: list[Unit], dataset: str, scheduler: Any, device: str
            ) -> dict[tuple[str, str], Any]:
    from .dino_scores import dino_contexts
    return dino_contexts(run, jobs, units, dataset, scheduler=scheduler, device=device)


CONTEXTS: dict[str, Callable | None] = {"tile": None, "patch": _patch, "batch": _batch,  # Detector.scoring
                                        "tokens": _tokens}


def variant_contexts(run: AggregateRun, units: list[Unit], dataset: str, *, scheduler: str | Callable = "threads",
                     device: str = "cpu") -> dict[tuple[str, str], Any]:
    """``(variant hash, class) -> context`` for every variant of ``run`` whose detector needs one."""
    by_scoring: dict[str, list[VariantJob]] = {}
    for job in run.variants:
        by_scoring.setdefault(job.config.detector.scoring, []).append(job)
    out: dict[tuple[str, str], Any] = {}
    for scoring, jobs in by_scoring.items():
        build = CONTEXTS[scoring]
        if build is not None:
            out.update(build(run, jobs, units, dataset, scheduler, device))
    return out

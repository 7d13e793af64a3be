"""The stage runner: what every precompute task shares. A task gets the run's ``ShardJob`` and
its units, skips what the store says is done (``pending``), computes the rest one image (or one
group of images) at a time, isolates each image's failure, records the completed units in the
unit index, and answers a ``StageResult``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from zsad.config import PipelineConfig
from zsad.stores import StageStore, Unit

from .decoded import prefetch
from .failures import Failure
from .plan import StagePlan
from .worker import image_source

Item = tuple[Unit, str, dict[str, Any]]  # a unit to compute, its image's sha256 and image record


@dataclass(frozen=True)
class ShardJob:
    """What every task of one precompute run shares (small: it travels with each task).

    Attributes:
        store: the store (pickled as its URL and read-only flag: a worker opens its own).
        plan: the stages' hashes; cfg: the pipeline config (its models, batching, device).
        dataset: the data set's name in the store.
        run_id: a worker process seeing a new one forgets what it knew of the store's unit
            index (other runs may have added or pruned units since).
        verify: read every unit's marker and chunks instead of trusting the index.
    """

    store: StageStore
    plan: StagePlan
    cfg: PipelineConfig
    dataset: str
    run_id: str
    verify: bool = False

    def hash(self, stage: str) -> str:
        return self.plan.hashes[stage]


@dataclass(frozen=True)
class StageResult:
    """What a stage task did: the units complete through it (computed now or before), in the
    order given, and the failures of the others."""

    done: tuple[Unit, ...] = ()
    failed: tuple[Failure, ...] = ()

    def then(self, later: "StageResult") -> "StageResult":
        """This stage followed by ``later`` (run on this one's ``done``)."""
        return StageResult(later.done, self.failed + later.failed)


def pending(store: StageStore, stage: str, stage_hash: str, image_hash: str, units: Iterable[Unit]
            ) -> tuple[list[Item], dict[str, dict[str, Any]]]:
    """Units whose ``stage`` output is missing, incomplete or made from another image version,
    and the units found complete by reading them (for the index).

    A unit the index records as made from the image version the index records is skipped
    without a read; any other is checked by its marker (one read of the image record, one of
    the unit), unless one listing of its folder shows it absent. Not trusting the index
    (``--verify``) also reads every chunk of a complete unit and checks it (``verify_unit``).
    """
    def source(unit: Unit) -> str:  # the image version: from the index when it has it, else its record
        indexed = store.index.entries("image", image_hash, unit.dataset).get(unit.path)
        return indexed["source"] if indexed and indexed.get("source") else image_source(store, image_hash, unit)[0]

    left = store.pending(stage, stage_hash, units, source)
    todo = [(unit, *image_source(store, image_hash, unit)) for unit in left.left]
    return todo, {path: {"source": attrs.get("source")} for path, attrs in left.found.items()}


def add_to_index(store: StageStore, stage: str, stage_hash: str, facts: dict[str, dict[str, Any]]) -> None:
    """Record complete units (``{unit path: facts}``) in the index, one record per data set."""
    by_dataset: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
    for path, f in facts.items():
        by_dataset[Unit.parse(path).dataset][path] = f
    for dataset, units in by_dataset.items():
        store.index.add(stage, stage_hash, dataset, units)


def run_stage(job: ShardJob, stage: str, units: Iterable[Unit],
              compute_one: Callable[[StageStore, Any, Unit, str, dict], None],
              setup: Callable[[], Any] = lambda: None, decodes: bool = False,
              compute_group: Callable[[StageStore, Any, list[Item]], None] | None = None,
              group: int = 1) -> StageResult:
    """Skip complete units and compute the rest, one image at a time, isolating failures.

    ``setup()`` runs once when there is work (it loads the model: its errors concern every image
    and fail the task); ``compute_one(store, context, unit, sha256, image_attrs)`` writes one
    unit. An exception there is recorded for that image and the others go on. ``decodes``: the
    stage reads the images (``zsad.tasks.decoded.image_of``), so the next two are decoded ahead.
    With ``compute_group`` and ``group`` > 1, ``group`` images at a time go to
    ``compute_group(store, context, [(unit, sha256, attrs), ...])`` (one batch for the model);
    if a group fails, its images are retried one by one so that only the bad one is recorded.
    """
    store, units = job.store, tuple(units)
    todo, complete = pending(store, stage, job.hash(stage), job.hash("image"), units)
    failed: list[Failure] = []
    if todo:
        context = setup()
        size = group if compute_group is not None else 1
        for start in range(0, len(todo), size):
            items = todo[start: start + size]
            if decodes:
                prefetch([a for _, _, a in todo[start + size: start + 2 * size + 1]])
            if size > 1:
                try:
                    compute_group(store, context, items)
                    complete.update({u.path: {"source": sha} for u, sha, _ in items})
                    continue
                except Exception:  # noqa: BLE001 - find the bad image: one at a time below
                    pass
            for unit, sha, attrs in items:
                try:
                    compute_one(store, context, unit, sha, attrs)
                    complete[unit.path] = {"source": sha}
                except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the others
                    failed.append(Failure.of(unit, stage, attrs.get("path", ""), exc))
    add_to_index(store, stage, job.hash(stage), complete)
    bad = {f.unit for f in failed}
    return StageResult(tuple(u for u in units if u not in bad), tuple(failed))

"""What one aggregation run carries to every chunk (``AggregateRun``), what a chunk returns
(``ChunkResult``: rows and metric accumulators, merged pairwise in a Dask tree), the one rule
naming a unit's source and the one writer of ``aggregate`` units (``write_result``).

Every detector's units hold the attributes of ``AggregateAttrs`` that its declaration lists
(``zsad.detectors.Detector.unit_attrs``); the full-size map only when asked (``save_maps``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np

from zsad.aggregate import map_key
from zsad.config import AggregateConfig
from zsad.evaluation import ClassEvaluator
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import PIXEL_MAP

from .fused import ImageFacts
from .plan import StagePlan


class Context(Protocol):
    """What a detector's per-class step leaves for scoring one image of the class (the few-shot
    references, the class's batch, MuSc's batch maps and scores)."""

    def source_of(self, unit: Unit) -> str:
        """The digest of the images the unit's scores depend on besides its own."""


@dataclass(frozen=True)
class VariantJob:
    """One variant of a run: its hash (where its units go) and its config."""

    variant_hash: str
    config: AggregateConfig


@dataclass(frozen=True)
class AggregateRun:
    """What every chunk of one aggregation run needs; small, so it travels to Dask workers.

    Attributes:
        store: the store (a read-only one writes nothing, fused maps included); plan: the
            precompute stages' hashes (and the fused dtype).
        variants: the run's variants; contexts: ``(variant hash, class)`` -> the per-class
            context of a variant whose detector needs one (``Context``).
        overwrite: recompute units already complete; save_maps: also write full-size maps;
        evaluate: stream labelled images into metrics (every variant is then computed);
        pixel_size: resize maps and masks before the pixel metrics (None: full resolution).
        square: MuSc's protocol: a detector that supports it is evaluated on the token stage's
            square (``zsad.variant_fields.square_protocol``).
        device: None to paste and count an evaluation's maps with numpy on the host, or a torch
            device to do it there (``zsad.torchpixels``; ``cuda``, or ``cpu`` in tests).
        run_id: a worker process seeing a new one forgets what it knew of the unit index
            (``zsad.tasks.worker.begin_run``); owner_pid: the process that made the run.
    """

    store: StageStore
    plan: StagePlan
    variants: tuple[VariantJob, ...]
    contexts: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    overwrite: bool = False
    save_maps: bool = False
    evaluate: bool = False
    pixel_size: int | None = None
    square: bool = False
    device: str | None = None
    run_id: str = ""
    owner_pid: int = field(default_factory=os.getpid)

    def context(self, job: VariantJob, unit: Unit) -> Any:
        """The job's context for the unit's class, or None (zero-shot)."""
        return self.contexts.get((job.variant_hash, unit.class_name))

    def facts(self, unit: Unit) -> ImageFacts:
        return ImageFacts.from_attrs(self.store.read_attrs(unit_key("image", self.plan.hashes["image"], unit)))


@dataclass(frozen=True)
class Row:
    """One image under one variant: what the flow reports."""

    variant: str
    unit: Unit
    sample_score: float
    label: int
    written: bool


@dataclass
class ChunkResult:
    """A chunk's rows and metric accumulators: sample sides per ``(variant hash, class)``,
    pixel sides per ``(map key, class)`` (one per distinct map, shared by its variants)."""

    rows: list[Row] = field(default_factory=list)
    samples: dict[tuple[str, str], ClassEvaluator] = field(default_factory=dict)
    pixels: dict[tuple[AggregateConfig, str], ClassEvaluator] = field(default_factory=dict)
    device_pixels: dict = field(default_factory=dict)  # (map key, class) -> TorchPixels, within a chunk

    def merge(self, other: "ChunkResult") -> "ChunkResult":
        """Both chunks' results (a tree of these bounds what is held at once)."""
        out = ChunkResult(self.rows + other.rows, dict(self.samples), dict(self.pixels))
        for mine, theirs in ((out.samples, other.samples), (out.pixels, other.pixels)):
            for key, ev in theirs.items():
                mine[key] = mine[key].merge(ev) if key in mine else ev
        return out

    def add(self, run: AggregateRun, job: VariantJob, unit: Unit, facts: ImageFacts, score: float, written: bool
            ) -> None:
        """One image's row and (labelled, evaluating) its sample score."""
        self.rows.append(Row(job.variant_hash, unit, score, facts.label, written))
        if run.evaluate and facts.label >= 0:
            self.samples.setdefault((job.variant_hash, unit.class_name), ClassEvaluator()).add_sample(
                facts.label, score)

    def pixel_side(self, run: AggregateRun, key: AggregateConfig, unit: Unit) -> ClassEvaluator:
        """The pixel accumulator of map ``key`` (a ``map_key``) for the unit's class."""
        return self.pixels.setdefault((key, unit.class_name), ClassEvaluator(pixel_size=run.pixel_size))

    def evaluators(self, run: AggregateRun) -> dict[tuple[str, str], ClassEvaluator]:
        """``(variant hash, class)`` -> its ``ClassEvaluator`` (sample scores and its map group's pixels)."""
        configs = {job.variant_hash: job.config for job in run.variants}
        out = {}
        for (vh, cls), sample in self.samples.items():
            pix = self.pixels.get((map_key(configs[vh]), cls))
            out[(vh, cls)] = ClassEvaluator(run.pixel_size, sample.labels, sample.scores,
                                            pix.pixels if pix else None, pix.normal_pixels if pix else None)
        return out


def unit_source(facts: ImageFacts, context: Context | None, unit: Unit) -> str:
    """The source a unit records: the image's sha256, and the digest of the images its scores
    also depend on (``{sha256}+{digest}``) when its detector compares it with others."""
    return facts.sha256 if context is None else f"{facts.sha256}+{context.source_of(unit)}"


@dataclass(frozen=True, kw_only=True)
class AggregateAttrs:
    """The attributes of an ``aggregate`` unit (each detector writes those it declares).

    Attributes:
        sample_score: the image's anomaly score; label: 1 anomalous, 0 normal, -1 unknown;
        has_map: the unit holds the full-size (H, W) float16 map ``pixel_map_hw``.
        tile_scores, component_scores: per tile and per foreground component (tile scoring).
        musc_score: MuSc's image score before RsCIN; batch, batch_images: the data set and size
            of the cached batch new images were scored against (``--against``).
    """

    sample_score: float
    label: int
    has_map: bool
    tile_scores: list[float] | None = None
    component_scores: list[float] | None = None
    musc_score: float | None = None
    batch: str | None = None
    batch_images: int | None = None

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def write_result(store: StageStore, *, job: VariantJob, unit: Unit, attrs: AggregateAttrs,
                 map_hw: np.ndarray | None, source: str) -> None:
    """The one writer of ``aggregate`` units: ``attrs`` (checked against the detector's
    declaration) and, when given, the full-size map (float16)."""
    extra = set(attrs.record()) - set(job.config.detector.unit_attrs)
    if extra:
        raise ValueError(f"{job.config.mode} units declare {job.config.detector.unit_attrs}; got also {sorted(extra)}")
    if attrs.has_map != (map_hw is not None):
        raise ValueError(f"{unit.path}: has_map={attrs.has_map} but a map was {'not ' * (map_hw is None)}given")
    arrays = {} if map_hw is None else {PIXEL_MAP: np.asarray(map_hw).astype(np.float16)}
    store.write_unit(unit_key("aggregate", job.variant_hash, unit), arrays, attrs.record(), source=source)

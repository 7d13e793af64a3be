"""Stage ``aggregate``: tile scores, component scores and sample scores of variants, from the store only.

Nothing here imports a model: re-aggregation reads cached arrays and runs numpy. Per image it
reads its ``fused`` unit per fusion method (made on first need, ``zsad.tasks.fused``) and its CLIP
embeddings, plans the sweep's distinct maps once (``zsad.aggregate.plan_maps``), pastes each
distinct map once inside the tiles' window and, when evaluating, streams it into the pixel
metrics shared by every variant of its group, against a ground truth prepared once per image.
Per-variant units are small (tile scores, component scores, the sample score) and written as
plain files on a local disk; the full-size map only when asked (``save_maps``, float16).
The functions are plain Python so Dask (threads, processes, a distributed cluster) runs them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

from zsad.stores import StageStore, Unit, class_key, unit_key
from zsad.stores.schema import PIXEL_MAP
from zsad.aggregate import ImageEvidence, ImageSweep, TextEvidence, map_key, plan_maps, sweep_image
from zsad.config import AggregateConfig
from zsad.datasets import ground_truth
from zsad.evaluation import ClassEvaluator
from zsad.bins import CellTruth, GroundTruth

from .fused import ImageFacts, read_evidence
from .plan import PATCH_STAGE, StagePlan
from .worker import begin_run

if TYPE_CHECKING:  # zsad.tasks.patches imports torch: workers of zero-shot runs never need it
    from .patches import Context


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
        variants: the run's variants; contexts: ``(variant hash, class)`` -> the patch context
            of a few-shot or mutual variant.
        overwrite: recompute units already complete; save_maps: also write full-size maps;
        evaluate: stream labelled images into metrics (every variant is then computed);
        pixel_size: resize maps and masks before the pixel metrics (None: full resolution).
        device: None to paste and count an evaluation's maps with numpy on the host, or a torch
            device to do it there (``zsad.torchpixels``; ``cuda``, or ``cpu`` in tests).
        run_id: a worker process seeing a new one forgets what it knew of the unit index
            (``zsad.tasks.worker.begin_run``); owner_pid: the process that made the run (it
            records the units its threads wrote in the index once, at the end; other
            processes at the end of each chunk).
    """

    store: StageStore
    plan: StagePlan
    variants: tuple[VariantJob, ...]
    contexts: Mapping[tuple[str, str], Context] = field(default_factory=dict)
    overwrite: bool = False
    save_maps: bool = False
    evaluate: bool = False
    pixel_size: int | None = None
    device: str | None = None
    run_id: str = ""
    owner_pid: int = field(default_factory=os.getpid)


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

    def evaluators(self, run: AggregateRun) -> dict[tuple[str, str], ClassEvaluator]:
        """``(variant hash, class)`` -> its ``ClassEvaluator`` (sample scores and its map group's pixels)."""
        configs = {job.variant_hash: job.config for job in run.variants}
        out = {}
        for (vh, cls), sample in self.samples.items():
            pix = self.pixels.get((map_key(configs[vh]), cls))
            out[(vh, cls)] = ClassEvaluator(run.pixel_size, sample.labels, sample.scores,
                                            pix.pixels if pix else None, pix.normal_pixels if pix else None)
        return out


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
        ctx = run.contexts.get((job.variant_hash, unit.class_name))
        if job.config.mode != "zero-shot" and ctx is None:
            raise ValueError(f"{unit.path}: a {job.config.mode} variant needs its class's reference set or batch "
                             "(zsad.tasks.patches.patch_contexts; run_variants builds them)")
        patches.append(None if job.config.mode == "zero-shot" else
                       ctx.scores_for(store, run.plan.hashes[PATCH_STAGE], unit, job.config))
    evidence = read_evidence(store, run.plan, unit, [c.fusion for c in cfgs], facts)
    text = _text(store, class_key("clip_text", run.plan.hashes["clip_text"], unit.dataset, unit.class_name))
    return evidence, sweep_image(evidence, text, cfgs, groups=plan_maps(cfgs), patch_tyx=patches, pixels=pixels)


def pixel_map(store: StageStore, plan: StagePlan, agg: AggregateConfig, unit: Unit,
              context: Context | None = None) -> np.ndarray:
    """One image's (H, W) float32 anomaly map for variant ``agg``, computed now (nothing is
    written); ``context``: the variant's patch context for the image's class (few-shot, mutual)."""
    job = VariantJob(plan.aggregate_hash(agg), agg)
    if agg.mode == "musc":
        from .musc_variants import musc_pixel_map  # torch-based: only MuSc variants
        if context is None:
            raise ValueError(f"{unit.path}: a MuSc variant's map needs its class's context (run_variants makes it)")
        return musc_pixel_map(AggregateRun(store.read_only_view(), plan, (job,)), agg, unit, context)
    contexts = {} if context is None else {(job.variant_hash, unit.class_name): context}
    run = AggregateRun(store.read_only_view(), plan, (job,), contexts)
    facts = ImageFacts.from_attrs(store.read_attrs(unit_key("image", plan.hashes["image"], unit)))
    return compute_sweep(run, unit, facts, [job])[1].aggregated(0).pixel_map_hw


def _write(run: AggregateRun, job: VariantJob, unit: Unit, facts: ImageFacts, sweep: ImageSweep, i: int,
           source: str) -> None:
    """Variant ``i``'s unit: scores as attributes (one small file; float64 values exact in JSON),
    the full-size map as an array only with ``save_maps``."""
    arrays = {PIXEL_MAP: sweep.aggregated(i).pixel_map_hw.astype(np.float16)} \
        if run.save_maps else {}
    run.store.write_unit(
        unit_key("aggregate", job.variant_hash, unit), arrays,
        {"sample_score": sweep.sample_scores[i], "label": facts.label, "has_map": run.save_maps,
         "tile_scores": sweep.tile_scores[i].tolist(), "component_scores": sweep.component_scores[i].tolist()},
        source=source)  # aggregate decided to write (e.g. maps now wanted)


def _source(run: AggregateRun, job: VariantJob, unit: Unit, facts: ImageFacts) -> str:
    ctx = run.contexts.get((job.variant_hash, unit.class_name))
    return facts.sha256 if ctx is None else f"{facts.sha256}+{ctx.source}"


def aggregate_unit(run: AggregateRun, unit: Unit, out: ChunkResult, listed: dict[str, set[str]] | None = None
                   ) -> None:
    """One image for every variant of ``run`` not yet complete (all of them when evaluating):
    rows, units written, and (labelled images, ``run.evaluate``) metric accumulators in ``out``."""
    store = run.store
    facts = ImageFacts.from_attrs(store.read_attrs(unit_key("image", run.plan.hashes["image"], unit)))
    evaluate = run.evaluate and facts.label >= 0
    todo: list[tuple[VariantJob, str, bool]] = []  # (job, source, write)
    for job in run.variants:
        source = _source(run, job, unit, facts)
        attrs = None if run.overwrite else store.complete_attrs(unit_key("aggregate", job.variant_hash, unit), source,
                                                                listed)
        done = attrs is not None and (not run.save_maps or attrs.get("has_map"))
        if done and not evaluate:
            out.rows.append(Row(job.variant_hash, unit, attrs["sample_score"], facts.label, False))
        else:
            todo.append((job, source, not done and not store.read_only))
    if not todo:
        return
    on_device = run.device is not None and evaluate and not run.save_maps
    evidence, sweep = compute_sweep(run, unit, facts, [job for job, _, _ in todo], pixels=not on_device)
    for i, (job, source, write) in enumerate(todo):
        if write:
            _write(run, job, unit, facts, sweep, i, source)
        out.rows.append(Row(job.variant_hash, unit, sweep.sample_scores[i], facts.label, write))
        if evaluate:
            out.samples.setdefault((job.variant_hash, unit.class_name), ClassEvaluator()).add_sample(
                facts.label, sweep.sample_scores[i])
    if evaluate:  # the mask decoded, labelled and laid out once for all the image's maps
        gt, layouts = GroundTruth.from_mask(ground_truth(facts.mask_path, facts.image_hw)), {}
        if on_device:
            _add_on_device(run, unit, facts, evidence, sweep, [job.config for job, _, _ in todo], gt, out)
            return
        for group, window in zip(sweep.groups, sweep.windows):
            if window.boxes not in layouts:
                layouts[window.boxes] = CellTruth.layout(gt, window.boxes)
            out.pixels.setdefault((group.key, unit.class_name), ClassEvaluator(pixel_size=run.pixel_size)).add_pixels(
                facts.label, layouts[window.boxes], window)


def _add_on_device(run: AggregateRun, unit: Unit, facts: ImageFacts, evidence, sweep: ImageSweep,
                   cfgs: list[AggregateConfig], gt: GroundTruth, out: ChunkResult) -> None:
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

"""AnomalyDINO's detectors in an aggregation run. Per class, before the chunks, a ``DinoContext``:
the few-shot memory bank (the references' patch tokens, every rotation) or, batched, every test
image's patch distances against the others of its class. Each image is then finished through
the same chunks as every other detector (``score_dino``): its distances (masked patches at 0),
its score (mean of the top 1 %), its map at its own size, its unit and its metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Callable

import numpy as np

from zsad.aggregate import map_key
from zsad.anomalydino import (anomaly_map, batched_patch_distances, foreground_mask, image_score, official_masking,
                              patch_distances, reference_slice)
from zsad.anomalydino_fields import AnomalyDino, AnomalyDinoBatched
from zsad.shots import digest
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import DINO_TOKENS

from .aggregate_run import AggregateAttrs, AggregateRun, ChunkResult, VariantJob, write_result
from .fused import ImageFacts


@dataclass(frozen=True)
class DinoContext:
    """An AnomalyDINO variant's class: the memory bank (few-shot, (M, C) float32) or each test
    image's (P,) distances (batched), and the digest of the images they come from."""

    digest: str
    memory: np.ndarray | None = None
    distances: dict[str, np.ndarray] = field(default_factory=dict)

    def source_of(self, unit: Unit) -> str:
        if self.memory is None and unit.path not in self.distances:
            raise ValueError(f"{unit.path}: not in the AnomalyDINO batch this context was made from")
        return self.digest


def _tokens(store: StageStore, tokens_hash: str, unit: Unit) -> tuple[np.ndarray, tuple[int, int]]:
    key = unit_key("dino_tokens", tokens_hash, unit)
    return store.read_array(key, DINO_TOKENS), tuple(store.read_attrs(key)["grid"])


def masked(variant: AnomalyDino | AnomalyDinoBatched, unit: Unit, tokens_pc: np.ndarray, grid: tuple[int, int]
           ) -> np.ndarray:
    """(P,) bool: the patches the variant scores (all, or AnomalyDINO's foreground)."""
    on = variant.masking == "on" or (variant.masking == "official" and official_masking(unit.dataset,
                                                                                          unit.class_name))
    return foreground_mask(tokens_pc, grid) if on else np.ones(len(tokens_pc), bool)


def references(run: AggregateRun, few: AnomalyDino, units: list[Unit], cls: str) -> list[Unit]:
    """The official draw: the class's train images (of data set ``few.reference``, else the scored
    one) sorted by file name, ``[seed * k : (seed + 1) * k]``; a clear error when the token stage
    holds fewer."""
    store, h = run.store, run.plan.hashes
    dataset = few.reference or units[0].dataset
    train = store.list_units("image", h["image"], dataset, [cls], split="train")
    named = sorted((PurePath(str(store.read_attrs(unit_key("image", h["image"], u))["path"])).name, u)
                   for u in train)
    chosen = [u for _, u in named[reference_slice(few.shots, few.shot_seed)]]
    have = set(store.list_units("dino_tokens", h["dino_tokens"], dataset, [cls], split="train"))
    stage = run.plan.configs["dino_tokens"]
    if len(chosen) < few.shots or not set(chosen) <= have:
        raise ValueError(f"class {cls} of {dataset}: AnomalyDINO shots={few.shots} shot_seed={few.shot_seed} needs train images "
                         f"{few.shot_seed * few.shots}..{(few.shot_seed + 1) * few.shots - 1} by file name; "
                         f"{len(named)} exist and the dino_tokens stage holds the first {stage['references']} "
                         "(precompute --split train with AnomalyDinoConfig.references large enough; predict and serve: "
                         "--reference DIR, a folder of normal images of the class)")
    if few.rotation and not stage["rotations"]:
        raise ValueError("AnomalyDINO rotation=true needs the dino_tokens stage's rotations (AnomalyDinoConfig.rotations)")
    return chosen


def few_shot_context(run: AggregateRun, few: AnomalyDino, units: list[Unit], cls: str) -> DinoContext:
    refs = references(run, few, units, cls)
    bank, pairs = [], []
    for u in refs:
        tokens, _ = _tokens(run.store, run.plan.hashes["dino_tokens"], u)
        bank.append((tokens if few.rotation else tokens[:1]).reshape(-1, tokens.shape[-1]))
        pairs.append((u.path, run.store.read_attrs(unit_key("image", run.plan.hashes["image"], u))["sha256"]))
    return DinoContext(digest(pairs), memory=np.concatenate(bank))


def batched_context(run: AggregateRun, batched: AnomalyDinoBatched, units: list[Unit]) -> DinoContext:
    """Every image of the class's test batch against all the others (the official zero-shot)."""
    h = run.plan.hashes["dino_tokens"]
    tokens = {u.path: _tokens(run.store, h, u) for u in units}
    out = {}
    for u in units:
        own, grid = tokens[u.path]
        others = np.concatenate([t[0] for p, (t, _) in tokens.items() if p != u.path])
        d = batched_patch_distances(own[0], others, quantile=batched.quantile)
        d[~masked(batched, u, own[0], grid)] = 0.0
        out[u.path] = d
    pairs = [(u.path, run.facts(u).sha256) for u in units]
    return DinoContext(digest(pairs), distances=out)


def dino_contexts(run: AggregateRun, jobs: list[VariantJob], units: list[Unit], dataset: str, *,
                  scheduler: str | Callable = "synchronous", device: str = "cpu"
                  ) -> dict[tuple[str, str], DinoContext]:
    """``(variant hash, class) -> DinoContext`` for every AnomalyDINO variant of ``jobs``."""
    if jobs and not run.plan.configs.get("dino_tokens"):
        raise ValueError("AnomalyDINO variants need the dino_tokens stage: use a config that sets `anomalydino` "
                         "(anomalydino, anomalydino-b448, anomalydino-l448, dino-tiny) for precompute and this command")
    by_class: dict[str, list[Unit]] = {}
    for u in units:
        if u.split != "train":
            by_class.setdefault(u.class_name, []).append(u)
    out = {}
    for job in jobs:
        for cls, members in sorted(by_class.items()):
            variant = job.config.patch
            out[(job.variant_hash, cls)] = (few_shot_context(run, variant, members, cls)
                                            if isinstance(variant, AnomalyDino) else
                                            batched_context(run, variant, members))
    return out


def distances(run: AggregateRun, job: VariantJob, unit: Unit) -> tuple[np.ndarray, tuple[int, int]]:
    """The image's (P,) patch distances under the job (masked patches 0) and its grid."""
    ctx = run.context(job, unit)
    if ctx is None:
        raise ValueError(f"{unit.path}: an AnomalyDINO variant needs its class's context (run_variants makes it)")
    if ctx.memory is None:
        ctx.source_of(unit)  # a clear error for an image of another batch
        grid = run.store.read_attrs(unit_key("dino_tokens", run.plan.hashes["dino_tokens"], unit))["grid"]
        return ctx.distances[unit.path], tuple(grid)
    tokens, grid = _tokens(run.store, run.plan.hashes["dino_tokens"], unit)
    keep = masked(job.config.patch, unit, tokens[0], grid)
    d = np.zeros(len(keep))
    if keep.any():
        d[keep] = patch_distances(tokens[0][keep], ctx.memory, k=job.config.patch.neighbours)
    return d, grid


def dino_maps(run: AggregateRun, unit: Unit, facts: ImageFacts, jobs: list[VariantJob]) -> list[np.ndarray]:
    """Each job's (H, W) float32 map of the image, computed now."""
    out = []
    for job in jobs:
        d, grid = distances(run, job, unit)
        out.append(anomaly_map(d.reshape(grid), size=facts.image_hw).astype(np.float32))
    return out


def score_dino(run: AggregateRun, unit: Unit, facts: ImageFacts, todo: list[tuple[VariantJob, str, bool]],
               out: ChunkResult) -> None:
    """The image under AnomalyDINO's ``todo`` (job, source, write): score, unit, row, metrics."""
    evaluate = run.evaluate and facts.label >= 0
    for job, source, write in todo:
        d, grid = distances(run, job, unit)
        score = image_score(d)
        need_map = (write and run.save_maps) or evaluate
        map_hw = anomaly_map(d.reshape(grid), size=facts.image_hw).astype(np.float32) if need_map else None
        if write:
            attrs = AggregateAttrs(sample_score=score, label=facts.label, has_map=run.save_maps)
            write_result(run.store, job=job, unit=unit, attrs=attrs, source=source,
                         map_hw=map_hw if run.save_maps else None)
        out.add(run, job, unit, facts, score, write)
        if evaluate:
            out.pixel_side(run, map_key(job.config), unit).add_map(facts.label, facts.ground_truth(), map_hw)

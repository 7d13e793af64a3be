"""Patch evidence of few-shot and mutual variants: per-class reference memories and mutual scores.

Both depend on a set of images beyond the one scored: the class's reference images (few-shot)
or the class's whole test batch (mutual). That set is named by a digest of its (unit, image
sha256) pairs, and every unit that depends on it records ``{image sha256}+{digest}`` as its
source: adding an image to the batch or changing the references recomputes exactly what it
changes, and a rerun with the same sets recomputes nothing.

- ``memory/{hash}/{dataset}/{class}``: the reference tiles' patch features, concatenated
  (hash: the reference selection, shots and seed, and the patch stage).
- ``mutual/{hash}/{unit}``: an image's (T, gy, gx) mutual scores against the rest of its class
  (hash: fraction, neighbourhood and the patch stage), computed with Dask in blocks of images.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from typing import Callable, Mapping

import dask
import numpy as np

from zsad.stores import StageStore, Unit, class_key, unit_key
from zsad.stores.schema import MUTUAL_SCORES, PATCHES
from zsad.config import AggregateConfig
from zsad.patches import few_shot_scores, mutual_scores
from zsad.shots import check_no_leak, digest, draw_shots
from zsad.variants import FewShot, Mutual

from .plan import PATCH_STAGE, StagePlan, mutual_config



@dataclass(frozen=True)
class FewShotContext:
    """A few-shot variant's class: its reference set and where its memory is.

    Attributes:
        source: digest of the reference set (units record ``{sha256}+{source}``).
        memory_key: the class's ``memory`` unit, or None (read-only runs that found none: the
            reference units are concatenated when read).
        reference_keys: the references' patch units.
    """

    source: str
    memory_key: str | None
    reference_keys: tuple[str, ...]

    def source_of(self, unit: Unit) -> str:
        return self.source

    def scores_for(self, store: StageStore, patch_hash: str, unit: Unit, cfg: AggregateConfig) -> np.ndarray:
        """(T, gy, gx) nearest-reference distances of ``unit``'s patches."""
        query = store.read_array(unit_key(PATCH_STAGE, patch_hash, unit), PATCHES)
        return few_shot_scores(query, _memory(store, self.memory_key, self.reference_keys, self.source),
                               cfg.patch.neighbourhood)


@dataclass(frozen=True)
class MutualContext:
    """A mutual variant's class: its batch and where the scores are.

    Attributes:
        source: digest of the class's batch; stage_hash: the ``mutual`` stage's hash.
        scores: unit path -> (T, gy, gx) scores kept in memory (read-only runs write none).
    """

    source: str
    stage_hash: str
    scores: Mapping[str, np.ndarray]

    def source_of(self, unit: Unit) -> str:
        return self.source

    def scores_for(self, store: StageStore, patch_hash: str, unit: Unit, cfg: AggregateConfig) -> np.ndarray:
        if unit.path in self.scores:
            return self.scores[unit.path]
        return store.read_array(unit_key("mutual", self.stage_hash, unit), MUTUAL_SCORES)


Context = FewShotContext | MutualContext


@functools.lru_cache(maxsize=2)  # chunks run class by class; a full-shot memory can be GBs
def _memory(store: StageStore, key: str | None, references: tuple[str, ...], source: str) -> np.ndarray:
    """A class's reference patch features: its memory unit, or the reference units themselves;
    ``source`` keys the cache to the reference set."""
    if key is not None:
        return store.read_array(key, PATCHES)
    return np.concatenate([store.read_array(k, PATCHES) for k in references])


def image_records(store: StageStore, image_hash: str, units: list[Unit]) -> dict[str, tuple[str, str]]:
    """unit path -> (image sha256, image file path), one record read each."""
    out = {}
    for u in units:
        attrs = store.read_attrs(unit_key("image", image_hash, u))
        out[u.path] = (attrs["sha256"], attrs.get("path", u.path))
    return out


def reference_units(store: StageStore, plan: StagePlan, few: FewShot, dataset: str, cls: str) -> list[Unit]:
    """The reference images of ``cls``: ``few.shots`` of the train split of data set
    ``few.reference`` (or ``dataset``) cached with patches (``zsad.shots.draw_shots``)."""
    ref_ds = few.reference or dataset
    found = store.list_units(PATCH_STAGE, plan.hashes[PATCH_STAGE], ref_ds, [cls], split="train")
    return draw_shots(found, few.shots, few.shot_seed, class_name=cls, source=ref_ds)


def memory_context(store: StageStore, plan: StagePlan, few: FewShot, dataset: str, cls: str,
                   tests: dict[str, tuple[str, str]]) -> Context:
    """Build (or find) the class's reference memory; what aggregation needs to read it."""
    refs = reference_units(store, plan, few, dataset, cls)
    records = image_records(store, plan.hashes["image"], refs)
    check_no_leak(records, tests, cls)
    source = digest([(p, sha) for p, (sha, _) in records.items()])
    ref_keys = [unit_key(PATCH_STAGE, plan.hashes[PATCH_STAGE], u) for u in refs]
    config = {"shots": few.shots, "shot_seed": few.shot_seed, "reference": few.reference}
    mh = plan.memory_hash(config)
    key = class_key("memory", mh, dataset, cls)
    if not store.is_complete(key, source):
        if store.read_only:  # aggregation concatenates the reference units itself
            return FewShotContext(source, None, tuple(ref_keys))
        store.ensure_stage("memory", mh, config, {PATCH_STAGE: plan.hashes[PATCH_STAGE]})
        feats = np.concatenate([store.read_array(k, PATCHES) for k in ref_keys])
        store.write_unit(key, {PATCHES: feats},
                         {"references": [u.path for u in refs], "files": [records[u.path][1] for u in refs]},
                         source=source)
    return FewShotContext(source, key, tuple(ref_keys))


def mutual_block(store: StageStore, patch_hash: str, mh: str, mutual: Mutual, batch: list[str],
                 queries: list[str], sources: dict[str, str], block: int) -> dict[str, np.ndarray]:
    """One Dask task: mutual scores of ``queries`` against every image of ``batch`` (unit paths;
    themselves excluded), reading the batch ``block`` images at a time. Writes each query's unit
    (one writer per unit) or, into a read-only store, returns the scores."""

    def read(path: str) -> np.ndarray:
        return store.read_array(unit_key(PATCH_STAGE, patch_hash, Unit.parse(path)), PATCHES)

    blocks = ([(p, read(p)) for p in batch[i: i + block]] for i in range(0, len(batch), block))
    scores = mutual_scores({q: read(q) for q in queries}, blocks, mutual.mutual_fraction, mutual.neighbourhood)
    if store.read_only:
        return scores
    for path, sc in scores.items():
        store.write_unit(unit_key("mutual", mh, Unit.parse(path)), {MUTUAL_SCORES: sc},
                         {"batch_images": len(batch)}, source=sources[path])
    store.index.flush(("mutual",))  # object storage: the units' documents into the index
    return {}


def mutual_contexts(store: StageStore, plan: StagePlan, mutual: Mutual, by_class: dict[str, dict[str, tuple]],
                    scheduler: str | Callable, block: int = 16) -> dict[str, Context]:
    """Compute the missing mutual scores of every class's batch (Dask: one task per ``block``
    query images); class -> context for aggregation."""
    mh = plan.mutual_hash(mutual)
    digests, kept, jobs = {}, {}, []
    for cls, tests in sorted(by_class.items()):
        if len(tests) < 2:
            raise ValueError(f"mutual mode, class {cls!r}: needs at least 2 test images to compare, got {len(tests)}")
        batch_digest = digest([(p, sha) for p, (sha, _) in tests.items()])
        sources = {p: f"{sha}+{batch_digest}" for p, (sha, _) in tests.items()}
        digests[cls], kept[cls] = batch_digest, {}
        pending = [u.path for u in store.pending("mutual", mh, map(Unit.parse, sorted(tests)), sources).left]
        if pending and not store.read_only:
            store.ensure_stage("mutual", mh, mutual_config(mutual), {PATCH_STAGE: plan.hashes[PATCH_STAGE]})
        jobs += [(cls, dask.delayed(mutual_block)(store, plan.hashes[PATCH_STAGE], mh, mutual,
                                                  sorted(tests), pending[i: i + block], sources, block))
                 for i in range(0, len(pending), block)]
    results = dask.compute(*[j for _, j in jobs], scheduler=scheduler) if jobs else ()
    for (cls, _), scores in zip(jobs, results):
        kept[cls].update(scores)
    return {cls: MutualContext(digests[cls], mh, kept[cls]) for cls in digests}


def patch_contexts(store: StageStore, plan: StagePlan, variants: list[tuple[str, AggregateConfig]],
                   units: list[Unit], dataset: str, scheduler: str | Callable = "threads"
                   ) -> dict[tuple[str, str], Context]:
    """``(variant hash, class) -> context`` for the few-shot and mutual variants among ``variants``
    (zero-shot ones need none). Checks that every test image has patch features."""
    patch_variants = [(vh, a) for vh, a in variants if isinstance(a.patch, (FewShot, Mutual))]
    if not patch_variants:
        return {}
    parsed = list(units)
    with_patches = {u.path for u in store.list_units(PATCH_STAGE, plan.hashes[PATCH_STAGE], dataset,
                                                     sorted({u.class_name for u in parsed}))}
    missing = [u.path for u in parsed if u.path not in with_patches]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no cached patch features (e.g. {missing[0]}), which the "
                         "few-shot and mutual modes need; run `zsad precompute ... --patches` first")
    records = image_records(store, plan.hashes["image"], parsed)
    by_class: dict[str, dict[str, tuple]] = collections.defaultdict(dict)
    for u in parsed:
        by_class[u.class_name][u.path] = records[u.path]
    out: dict[tuple[str, str], Context] = {}
    for vh, agg in patch_variants:
        if isinstance(agg.patch, FewShot):
            for cls, tests in by_class.items():
                out[(vh, cls)] = memory_context(store, plan, agg.patch, dataset, cls, tests)
        else:
            for cls, ctx in mutual_contexts(store, plan, agg.patch, by_class, scheduler).items():
                out[(vh, cls)] = ctx
    return out

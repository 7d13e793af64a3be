"""MuSc variants from the store: the class batches, the cached nearest-patch distances
(``musc/{hash}/{unit}``, one group per r and ``same_position``), and each variant's maps, scores
and RsCIN, written as ``aggregate`` units like every other variant's.

The N^2 distance pass is the only expensive step: it runs once per (batch, r). Where all of a
batch's distances are missing and the work stays on this machine it is one task forming each
unordered pair of images once (``zsad.musc.pair_distances``); otherwise (a few new images, a
Dask cluster) blocks of query images, each reading its batch's tokens from the store.
Each unit records ``{image sha256}+{batch digest}`` as its source: an image added to or removed
from the class recomputes that class's distances and nothing else; fractions, layer subsets, r
subsets of cached r's, RsCIN and the hybrids re-run from these units alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import dask
import numpy as np
import torch

from zsad.musc import layer_features, nearest_distances, pair_distances
from zsad.musc_maps import divide_subsets
from zsad.shots import digest
from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import CLASS_TOKEN, NEAREST, TOKENS
from zsad.variants import Musc

from .plan import StagePlan, musc_config


@dataclass(frozen=True)
class MuscBatch:
    """The images one MuSc batch compares (a class, or one of its ``divide_num`` subsets).

    Attributes:
        class_name: the class; units: its images in batch order (sorted by unit path);
        digest: names the batch (its (unit, image sha256) pairs).
    """

    class_name: str
    units: tuple[Unit, ...]
    digest: str

    def source(self, sha256: str) -> str:
        return f"{sha256}+{self.digest}"


def class_batches(records: dict[str, tuple[str, str]], units: list[Unit], divide_num: int) -> list[MuscBatch]:
    """Each class's batches: its images sorted by unit path, cut into MuSc's ``divide_num``
    subsets (``zsad.musc.divide_subsets`` over the image files' folders).

    Args:
        records: unit path -> (image sha256, image file path).
    """
    by_class: dict[str, list[Unit]] = {}
    for u in sorted(units, key=lambda u: u.path):
        by_class.setdefault(u.class_name, []).append(u)
    out = []
    for cls, members in sorted(by_class.items()):
        files = [records[u.path][1] for u in members]
        for subset in divide_subsets(files, divide_num):
            batch = tuple(members[i] for i in subset)
            if len(batch) < 2:
                raise ValueError(f"MuSc, class {cls!r}: a batch of {len(batch)} image(s) cannot be scored mutually "
                                 f"(the class has {len(members)} test image(s), divide_num={divide_num}); give at "
                                 "least 2 per batch (MuSc's 30 % rule wants 5 or more), or score new images against "
                                 "a cached batch: `zsad predict --variant mode=musc --against DATASET`")
            out.append(MuscBatch(cls, batch, digest([(u.path, records[u.path][0]) for u in batch])))
    return out


def class_tokens(store: StageStore, tokens_hash: str, units) -> np.ndarray:
    """(N, D) float32 class tokens (RsCIN's) of ``units``, in their order."""
    return np.stack([store.read_array(unit_key("musc_tokens", tokens_hash, u), CLASS_TOKEN) for u in units])


def batch_tokens(store: StageStore, tokens_hash: str, batch: MuscBatch) -> torch.Tensor:
    """(N, L, T, C) float16 tokens of the batch's images, with a clear error for a missing one."""
    out = []
    for u in batch.units:
        key = unit_key("musc_tokens", tokens_hash, u)
        if not store.is_complete(key):
            raise ValueError(f"{store.url}: {u.path} has no MuSc tokens for this config; run `zsad precompute` with "
                             "a config that sets `musc` (e.g. --config musc or musc-tiny)")
        out.append(torch.from_numpy(store.read_array(key, TOKENS)))
    return torch.stack(out)


def nearest_block(store: StageStore, plan: StagePlan, r: int, same_position: int | None, batch: MuscBatch,
                  queries: list[int], sources: dict[str, str], device: str = "cpu") -> dict[str, np.ndarray]:
    """One task: the (L, N, P) nearest-patch distances of the batch's images ``queries``
    (indices into ``batch.units``; all of them: ``zsad.musc.pair_distances``, each unordered pair
    once) at neighbourhood size r; own column +inf. Writes each query's
    unit or, into a read-only store, returns them (unit path -> rows)."""
    tokens = batch_tokens(store, plan.hashes["musc_tokens"], batch)
    whole = len(queries) == len(batch.units)  # every pair is needed: each unordered pair once
    rows = []
    for lay in range(tokens.shape[1]):
        z = layer_features(tokens, lay, r, device=device)
        d = (pair_distances(z, same_position=same_position) if whole else
             nearest_distances(z[queries], z, same_position=same_position)).cpu()
        for a, i in enumerate(queries):
            d[a, i] = float("inf")
        rows.append(d)
    table = torch.stack(rows, dim=1).numpy()  # (Q, L, N, P)
    out = {batch.units[i].path: table[a] for a, i in enumerate(queries)}
    if store.read_only:
        return out
    h = plan.musc_hash(r, same_position)
    for path, row in out.items():
        store.write_unit(unit_key("musc", h, Unit.parse(path)), {NEAREST: row},
                         {"batch": [u.path for u in batch.units], "r": r}, source=sources[path])
    store.index.flush(("musc",))
    return {}


QUERY_BLOCK = 32  # query images per Dask task of the distance pass
RowKey = tuple[int, "int | None", str, str]  # (r, same_position, batch digest, unit path)


def nearest_rows(store: StageStore, plan: StagePlan, musc: Musc, batches: list[MuscBatch],
                 records: dict[str, tuple[str, str]], scheduler: str | Callable = "synchronous",
                 device: str = "cpu", known: dict[RowKey, np.ndarray] | None = None) -> dict[RowKey, np.ndarray]:
    """Compute the missing ``musc`` units of every batch for each r of ``musc.r_list`` (those in
    ``known``, computed earlier in the run, are not missing); returns the rows computed but not
    stored (read-only stores), ``(r, same_position, batch digest, unit path) -> rows``."""
    jobs, known = [], known or {}
    local = scheduler in ("threads", "synchronous", "sync", "processes")  # the GEMMs use every core already
    for r in musc.r_list:
        h = plan.musc_hash(r, musc.same_position)
        for batch in batches:
            sources = {u.path: batch.source(records[u.path][0]) for u in batch.units}
            left = {u.path for u in store.pending("musc", h, batch.units, sources).left
                    if (r, musc.same_position, batch.digest, u.path) not in known}
            todo = [i for i, u in enumerate(batch.units) if u.path in left]
            if todo and not store.read_only:
                store.ensure_stage("musc", h, musc_config(r, musc.same_position),
                                   {"musc_tokens": plan.hashes["musc_tokens"]})
            block = len(todo) if len(todo) == len(batch.units) and local else QUERY_BLOCK
            jobs += [((r, batch.digest), dask.delayed(nearest_block)(store, plan, r, musc.same_position, batch,
                                                                     todo[i: i + block], sources, device))
                     for i in range(0, len(todo), block)]
    if not jobs:
        return {}
    results = dask.compute(*[j for _, j in jobs], scheduler="synchronous" if local else scheduler)
    return {(r, musc.same_position, d, path): row for ((r, d), _), res in zip(jobs, results)
            for path, row in res.items()}


def read_rows(store: StageStore, plan: StagePlan, musc: Musc, batch: MuscBatch, unit: Unit,
              kept: dict[RowKey, np.ndarray], cache: dict[RowKey, np.ndarray] | None = None) -> list[np.ndarray]:
    """The unit's (L, N, P) rows for each r of the variant, from ``kept`` (computed in this run),
    ``cache`` (read for another variant of the sweep: each unit's rows are read once) or the
    store (then added to ``cache``)."""
    out, cache = [], {} if cache is None else cache
    for r in musc.r_list:
        key = (r, musc.same_position, batch.digest, unit.path)
        if key in kept or key in cache:
            out.append(kept[key] if key in kept else cache[key])
            continue
        arrays, attrs = store.read_unit(unit_key("musc", plan.musc_hash(r, musc.same_position), unit))
        if attrs.get("batch") != [u.path for u in batch.units]:
            raise ValueError(f"{store.url}: the MuSc distances of {unit.path} were made for another batch; rerun "
                             "without --read-only to recompute them")
        cache[key] = arrays[NEAREST]
        out.append(arrays[NEAREST])
    return out

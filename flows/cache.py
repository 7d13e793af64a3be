"""``zsad cache``: list stage groups, their sizes, and prune hashes no kept config produces."""

from __future__ import annotations

from typing import Any

from zsad.stores.index import INDEX_ROOT
from zsad.tasks.plan import plan_stages, stage_configs
from zsad.stores import class_key, dataset_key, open_store, stage_root
from zsad.config import FUSIONS, to_jsonable
from zsad.stages import LATER_STAGES
from zsad.weights import WeightsError

from .configs import load_pipeline_config, names_hash, resolve_variants, stored_variants
from .command_requests import CacheRequest


def list_stages(store: str) -> list[dict[str, Any]]:
    st = open_store(store)
    rows = []
    for stage, h, attrs in st.stages():
        n = _count_units(st, stage, h)
        rows.append({"stage": stage, "hash": h, "units": n, "config": attrs.get("config"),
                     "bytes": st.size_bytes(stage_root(stage, h))})
    return rows


def human(n: int | None) -> str:
    """Bytes for people.

    Example:
        >>> human(0), human(1536), human(3_400_000_000)
        ('0 B', '1.5 KB', '3.4 GB')
    """
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def sizes(store: str) -> dict[str, Any]:
    """Per stage group: units, size (readable) and bytes, largest first, and the total."""
    rows, st = list_stages(store), open_store(store)
    if INDEX_ROOT in st.children(""):  # the unit index's records (object storage): counted, not a stage
        rows.append({"stage": INDEX_ROOT, "hash": "", "units": None, "bytes": st.size_bytes(INDEX_ROOT)})
    rows.sort(key=lambda r: -(r["bytes"] or 0))
    total = sum(r["bytes"] or 0 for r in rows)
    return {"total": human(total), "total_bytes": total,
            "by_stage": [{"stage": r["stage"], "hash": r["hash"], "units": r["units"], "size": human(r["bytes"]),
                          "bytes": r["bytes"]} for r in rows]}


def _count_units(st, stage: str, stage_hash: str) -> int:
    """Complete units of a stage group: per image (``list_units``), per class (``clip_text``,
    ``memory``: ``<dataset>/<class>``) or per class of a variant (``thresholds/<variant>/<class>``)."""
    n = 0
    for ds in st.children(stage_root(stage, stage_hash)):
        if st.is_complete(dataset_key(stage, stage_hash, ds)):
            n += 1
            continue
        classes = st.children(dataset_key(stage, stage_hash, ds))
        per_image = [c for c in classes if not st.is_complete(class_key(stage, stage_hash, ds, c))]
        n += len(classes) - len(per_image)
        if per_image:
            n += len(st.list_units(stage, stage_hash, ds, per_image))
    return n


def _kept(keep_configs: list[str]) -> tuple[set[str], list[tuple[str, Any]]]:
    """Stage hashes the kept configs produce; for a config whose weights are not on this machine
    (its hashes cannot be computed), the (stage, config) pairs to keep by their recorded config."""
    hashes: set[str] = set()
    by_config: list[tuple[str, Any]] = []
    for name in keep_configs:
        cfg = load_pipeline_config(name)
        try:
            plan = plan_stages(cfg)
            hashes |= set(plan.hashes.values()) | {plan.fused_hash(f) for f in FUSIONS}
        except WeightsError:
            by_config += list(stage_configs(cfg).items())
    return hashes, by_config


def prune(store: str, keep_configs: list[str], dry_run: bool = False) -> list[str]:
    """Delete stage groups that none of ``keep_configs`` would read. Aggregate variants, their
    thresholds and failure records are kept when what they were made from is kept.

    Works without model weights: a kept config whose weights are absent keeps every stage
    group whose recorded config equals its own (conservative: it may keep more, never less).
    Returns the deleted ``stage/hash`` paths.
    """
    if not keep_configs:
        raise ValueError("prune needs at least one --keep config (e.g. --keep paper); refusing to delete everything")
    st = open_store(store)
    kept, by_config = _kept(keep_configs)
    groups = list(st.stages())
    for stage, h, attrs in groups:
        if (stage, to_jsonable(attrs.get("config"))) in by_config:
            kept.add(h)
    present = {h for stage, h, _ in groups if stage == "aggregate"}  # thresholds share their variant's hash
    for level in LATER_STAGES:  # kept with their inputs, in dependency order
        for stage, h, attrs in groups:
            inputs = set(attrs.get("inputs", {}).values())
            # thresholds of a variant pruned on its own (prune --variants) are kept: calibrations are dear
            if stage == level and (inputs <= kept or (stage == "thresholds" and not inputs & present)):
                kept.add(h)
    return _delete(st, [stage_root(stage, h) for stage, h, _ in groups if h not in kept], dry_run)


def _delete(st, doomed: list[str], dry_run: bool) -> list[str]:
    """Delete these ``stage/hash`` groups (unless ``dry_run``); returns them."""
    if not dry_run:
        for path in doomed:
            st.delete(path)
    return doomed


def prune_variants(store: str, spec: str, dry_run: bool = False, thresholds: bool = False) -> list[str]:
    """Delete aggregate variants: stored hashes (or prefixes of at least 6 hex digits), labels, or
    a sweep such as ``fusion=geometric`` (fields not named at the seed's values; every stored
    variant with such a config, whatever pipeline config it was aggregated from). Their stored thresholds are kept unless
    ``thresholds``. Needs no model weights. Returns the deleted ``stage/hash`` paths."""
    st = open_store(store)
    groups = list(st.stages())
    stored = stored_variants(groups)
    words = spec.split() if "=" not in spec else [spec]
    by_hash = {w for w in words if any(names_hash(w, h) for h, _ in stored)}
    chosen = {h for h, _ in stored for w in by_hash if names_hash(w, h)}
    rest = " ".join(w for w in words if w not in by_hash)
    if rest:
        wanted = [to_jsonable(a) for a in resolve_variants(rest, stored)]
        chosen |= {h for h, recorded in stored if recorded in wanted}
    doomed = [stage_root("aggregate", h) for h in sorted(chosen)]
    if thresholds:
        doomed += [stage_root("thresholds", h) for s, h, _ in groups if s == "thresholds" and h in chosen]
    return _delete(st, doomed, dry_run)


def run_cache(request: CacheRequest) -> Any:
    """``zsad cache list|size|prune``."""
    r = request
    if r.action == "list":
        return list_stages(r.store)
    if r.action == "size":
        return sizes(r.store)
    if r.variants:
        doomed = prune_variants(r.store, r.variants, r.dry_run, r.with_thresholds)
    else:
        doomed = prune(r.store, list(r.keep), r.dry_run)
    return {"deleted" if not r.dry_run else "would_delete": doomed}

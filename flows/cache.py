"""``zsad cache``: list stage groups, their sizes, and prune hashes no kept config produces."""

from __future__ import annotations

from typing import Any

from tasks.plan import plan_stages, stage_configs
from tasks.runtime import open_store
from zsad.config import to_jsonable
from zsad.weights import WeightsError

from .configs import load_pipeline_config


def list_stages(store: str) -> list[dict[str, Any]]:
    st = open_store(store)
    rows = []
    for stage, h, attrs in st.stages():
        n = sum(1 for _ in _units(st, f"{stage}/{h}"))
        rows.append({"stage": stage, "hash": h, "units": n, "config": attrs.get("config"),
                     "bytes": st.size_bytes(f"{stage}/{h}") if st.local else None})
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
    rows = sorted(list_stages(store), key=lambda r: -(r["bytes"] or 0))
    total = sum(r["bytes"] or 0 for r in rows)
    return {"total": human(total), "total_bytes": total,
            "by_stage": [{"stage": r["stage"], "hash": r["hash"], "units": r["units"], "size": human(r["bytes"]),
                          "bytes": r["bytes"]} for r in rows]}


def _units(st, base: str):
    for ds in st.children(base):
        for cls in st.children(f"{base}/{ds}"):
            if st.is_complete(f"{base}/{ds}/{cls}"):
                yield cls
                continue
            for sp in st.children(f"{base}/{ds}/{cls}"):
                yield from st.children(f"{base}/{ds}/{cls}/{sp}")


def _kept(keep_configs: list[str]) -> tuple[set[str], list[tuple[str, Any]]]:
    """Stage hashes the kept configs produce; for a config whose weights are not on this machine
    (its hashes cannot be computed), the (stage, config) pairs to keep by their recorded config."""
    hashes: set[str] = set()
    by_config: list[tuple[str, Any]] = []
    for name in keep_configs:
        cfg = load_pipeline_config(name)
        try:
            hashes |= set(plan_stages(cfg).hashes.values())
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
    derived = ("aggregate", "thresholds", "errors")  # kept with their inputs, in this order
    for level in derived:
        for stage, h, attrs in groups:
            if stage == level and set(attrs.get("inputs", {}).values()) <= kept:
                kept.add(h)
    doomed = [f"{stage}/{h}" for stage, h, _ in groups if h not in kept]
    if not dry_run:
        for path in doomed:
            st.delete(path)
    return doomed

"""``zsad cache``: list stage groups, their sizes, and prune hashes no kept config produces."""

from __future__ import annotations

from typing import Any

from tasks.plan import plan_stages
from tasks.runtime import open_store

from .configs import load_pipeline_config


def list_stages(store: str) -> list[dict[str, Any]]:
    st = open_store(store)
    rows = []
    for stage, h, attrs in st.stages():
        n = sum(1 for _ in _units(st, f"{stage}/{h}"))
        rows.append({"stage": stage, "hash": h, "units": n, "config": attrs.get("config"),
                     "bytes": st.size_bytes(f"{stage}/{h}") if st.local else None})
    return rows


def _units(st, base: str):
    for ds in st.children(base):
        for cls in st.children(f"{base}/{ds}"):
            if st.is_complete(f"{base}/{ds}/{cls}"):
                yield cls
                continue
            for sp in st.children(f"{base}/{ds}/{cls}"):
                yield from st.children(f"{base}/{ds}/{cls}/{sp}")


def prune(store: str, keep_configs: list[str], dry_run: bool = False) -> list[str]:
    """Delete stage groups that none of ``keep_configs`` would read (aggregate variants are kept
    when their inputs all belong to a kept config). Returns the deleted ``stage/hash`` paths."""
    if not keep_configs:
        raise ValueError("prune needs at least one --keep config (e.g. --keep paper); refusing to delete everything")
    st = open_store(store)
    keep: set[str] = set()
    kept_hashes: set[str] = set()
    for name in keep_configs:
        plan = plan_stages(load_pipeline_config(name))
        keep |= {f"{s}/{h}" for s, h in plan.hashes.items()}
        kept_hashes |= set(plan.hashes.values())
    doomed = []
    for stage, h, attrs in st.stages():
        path = f"{stage}/{h}"
        if stage == "aggregate":
            if set(attrs.get("inputs", {}).values()) <= kept_hashes:
                continue
        elif path in keep:
            continue
        doomed.append(path)
    if not dry_run:
        for path in doomed:
            st.delete(path)
    return doomed

"""Timing and size helpers shared by the benchmark scripts (imported, not run)."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def timed(fn, repeats: int = 2) -> tuple[float, float]:
    """(best wall seconds of ``repeats`` calls after one untimed call, CPU use in cores over them)."""
    fn()
    best, wall0, cpu0 = float("inf"), time.perf_counter(), cpu_seconds()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best, (cpu_seconds() - cpu0) / max(time.perf_counter() - wall0, 1e-9)


def stored_mb(key: str, arrays: dict) -> float:
    """Megabytes on disk of one store unit holding ``arrays`` under ``key`` (a fresh local store)."""
    from zsad.stores import StageStore
    with tempfile.TemporaryDirectory() as tmp:
        StageStore(str(Path(tmp) / "s.zarr")).write_unit(key, arrays, source="x")
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 1e6


def print_rows(rows: list[tuple[str, str]]) -> None:
    """Print ``(what, value)`` rows as a two-column Markdown table, the first column padded."""
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | value |\n|{'-' * (width + 2)}|---|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")

"""Walk a store and read every complete unit whole (the tests' proof that it is readable); a
generated VisA-shaped store."""

from __future__ import annotations

import sys
from pathlib import Path

from zsad.stores import StageStore


def complete_units(store: str) -> set[str]:
    """Every unit that reads as complete, each read whole (arrays and all) to prove it."""
    st, found = StageStore(store), set()
    for key in st.unit_keys():
        st.read_unit(key)
        found.add(key)
    return found


def unit_arrays(store: str, keys: set[str]) -> dict[str, dict]:
    """``key -> {array name: array}`` of complete units (for comparing two stores)."""
    st = StageStore(store)
    return {k: st.read_unit(k)[0] for k in keys}


def visa_store(tmp_path: Path, n: int) -> str:
    """A generated VisA-shaped store of ``n`` images with random tiny-model outputs
    (``benchmarks/bench_visa_scale.generate``): no model runs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_visa_scale import generate
    generate(tmp_path, 0, n, "tiny")
    return str(tmp_path / "store.zarr")

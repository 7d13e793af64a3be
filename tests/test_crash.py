"""``kill -9`` at several moments of a precompute, then a rerun: the store must equal an
uninterrupted run's, with nothing half-written left that looks finished."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from procs import spawned
from zsad.stores import StageStore

pytestmark = [pytest.mark.slow]

ZSAD = str(Path(sys.executable).with_name("zsad"))


def _precompute(root, store, cwd, kill_at_units: int | None = None) -> None:
    """``zsad precompute`` in its own process; ``kill_at_units``: ``kill -9`` it as soon as that
    many per-image units are in place (each appears whole, by a rename, so counting is exact)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    with spawned([ZSAD, "precompute", "--dataset", "synthetic", "--root", str(root), "--store", store,
                  "--shard-size", "3"], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        if kill_at_units is None:
            assert proc.wait(timeout=600) == 0
            return
        while proc.poll() is None and len(list(Path(store).glob("*/*/*/*/*/*/zarr.json"))) < kill_at_units:
            time.sleep(0.02)
    # leaving ``spawned``: kill -9 of the run and whatever it started




def test_kill_minus_9_then_rerun_equals_an_uninterrupted_run(synthetic_root, precomputed_store, tmp_path):
    reference, crashed = precomputed_store, str(tmp_path / "crash.zarr")  # the reference: one uninterrupted run
    partial = []
    for at in (24, 44):  # of 56 per-image units: the rerun resumes and is killed again, later
        _precompute(synthetic_root, crashed, tmp_path, kill_at_units=at)
        partial.append(len(list(StageStore(crashed).unit_keys())) if Path(crashed).exists() else 0)
    assert any(0 < n < 8 * 7 + 2 for n in partial), partial  # a kill did land mid-run
    _precompute(synthetic_root, crashed, tmp_path)
    a, b = StageStore(reference), StageStore(crashed)
    keys_a, keys_b = sorted(a.unit_keys()), sorted(b.unit_keys())
    assert keys_a == keys_b and len(keys_a) == 8 * 7 + 2
    for key in keys_a:
        (arr_a, attrs_a), (arr_b, attrs_b) = a.read_unit(key), b.read_unit(key)
        assert attrs_a == attrs_b, key
        assert arr_a.keys() == arr_b.keys() and all(np.array_equal(arr_a[n], arr_b[n]) for n in arr_a), key
    # nothing half-written left: no temp folder, and every unit folder is a complete unit
    assert not list(Path(crashed).rglob(".tmp-*"))
    unit_dirs = {str(p.parent.relative_to(crashed)) for p in Path(crashed).glob("*/*/*/*/*/*/zarr.json")}
    assert unit_dirs <= set(keys_b) | {k.rsplit("/", 1)[0] for k in keys_b}

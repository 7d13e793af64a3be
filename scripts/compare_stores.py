"""Compare two zsad stores unit by unit (``StageStore.unit_keys``: per image, per class and per
stage): per stage, how many complete units both hold, how many are bit-identical (every array
equal, NaN equal to NaN; attributes not compared: they hold paths and times), and the largest
absolute difference of the others.

    .venv/bin/python scripts/compare_stores.py A.zarr B.zarr

Prints a Markdown table; exits 1 when a unit differs or is in only one store. Used by
``scripts/check_install_beside.sh`` to compare the demo under two torch releases.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zsad.stores import StageStore  # noqa: E402

def difference(a: dict, b: dict) -> float:
    """0.0 when every array of two units is equal (NaN equal to NaN), else the largest absolute
    difference (inf when names, shapes or dtypes differ).

    >>> difference({"x": np.array([1.0, np.nan])}, {"x": np.array([1.0, np.nan])})
    0.0
    >>> difference({"x": np.array([1.0, 2.0])}, {"x": np.array([1.0, 2.5])})
    0.5
    """
    if a.keys() != b.keys():
        return float("inf")
    worst = 0.0
    for name in a:
        u, v = np.asarray(a[name]), np.asarray(b[name])
        if u.shape != v.shape or u.dtype != v.dtype:
            return float("inf")
        if u.dtype.kind in "fc":
            if not np.array_equal(u, v, equal_nan=True):
                with np.errstate(invalid="ignore"):  # inf - inf
                    worst = max(worst, float(np.nanmax(np.abs(u.astype(np.float64) - v.astype(np.float64)))))
        elif not np.array_equal(u, v):
            worst = max(worst, float(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64))))
                        if u.dtype.kind in "iub" else float("inf"))
    return worst


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    a, b = StageStore(argv[0]), StageStore(argv[1])
    print("| stage | units in both | bit-identical | largest difference | only in one |\n|---|---:|---:|---:|---:|")
    keys_a, keys_b = set(a.unit_keys()), set(b.unit_keys())
    bad = 0
    for stage in sorted({k.split("/", 1)[0] for k in keys_a | keys_b}):
        in_a, in_b = {k for k in keys_a if k.startswith(f"{stage}/")}, {k for k in keys_b if k.startswith(f"{stage}/")}
        both = sorted(in_a & in_b)
        diffs = [difference(a.read_unit(k)[0], b.read_unit(k)[0]) for k in both]
        same = sum(d == 0.0 for d in diffs)
        only = len(in_a ^ in_b)
        bad += len(both) - same + only
        print(f"| {stage} | {len(both)} | {same} | {max(diffs, default=0.0):.3g} | {only} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

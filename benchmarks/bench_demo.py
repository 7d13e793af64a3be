"""Wall time of ``zsad demo`` (fresh output folder each time), old code against this checkout,
interleaved in one run (old, new, old, new), with core count and CPU utilisation (children's
user+system time over wall time and cores), and whether every variant of the old demo's
``metrics.json`` is identical in the new one's (which may add variants: the new detectors).

    .venv/bin/python benchmarks/bench_demo.py --old 9e3768c [--repeats 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oldrev import ROOT, checkout, environment  # noqa: E402


def timed_demo(python: Path, cwd: Path, out: Path, extra: tuple[str, ...] = ()) -> tuple[float, float, int]:
    """(wall seconds, CPU use in [0, 1] of all cores, exit status) of one demo."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run([str(python), "-m", "zsad", "demo", "--out", str(out), *extra], cwd=cwd,
                        capture_output=True).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu / wall / (os.cpu_count() or 1), rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="a1ea2a7", help="the old revision (default: before the detector interface)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="one demo each at 64 px: a few minutes")
    args = ap.parse_args()
    extra = ("--image-size", "64") if args.quick else ()
    if args.quick:
        args.repeats = 1
    work = Path(args.work or tempfile.mkdtemp(prefix="zsad-bench-demo-"))
    src = checkout(work, args.old, Path(__file__), "bench_demo.py")
    sides = {"old": (environment(src), src), "new": (ROOT / ".venv" / "bin" / "python", ROOT)}
    times: dict[str, list[tuple[float, float, int]]] = {"old": [], "new": []}
    for i in range(args.repeats):
        for side, (python, cwd) in sides.items():
            times[side].append(timed_demo(python, cwd, work / f"demo-{side}-{i}", extra))
    print(f"{os.cpu_count()} cores; old = {args.old}, new = this checkout; {args.repeats} demo(s) each, interleaved")
    print("| code | wall (s), each run | best (s) | CPU use | exit |\n|---|---|---:|---:|---|")
    for side, runs in times.items():
        print(f"| {side} | {', '.join(f'{w:.0f}' for w, _, _ in runs)} | {min(w for w, _, _ in runs):.0f} | "
              f"{sum(u for _, u, _ in runs) / len(runs):.0%} | {', '.join(str(rc) for _, _, rc in runs)} |")
    best = {s: min(w for w, _, _ in r) for s, r in times.items()}
    print(f"new / old (best): {best['new'] / best['old']:.2f}")
    same, added = True, set()
    for i in range(args.repeats):
        old, new = (json.loads((work / f"demo-{side}-{i}" / "results" / "metrics.json").read_text())
                    for side in ("old", "new"))
        same &= {k: new.get(k) for k in old} == old
        added |= set(new) - set(old)
    print(f"metrics.json: the old demo's variants identical in the new one: {same}; variants the new demo adds: "
          f"{len(added)}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

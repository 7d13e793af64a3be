"""Wall time of the test suite's quick tier (``-m "not slow"``) and of the full suite, old code
against this checkout, in one run on this machine (interleaved: old quick, new quick, old full,
new full). The old code runs from a ``git archive`` of ``--old`` with a hard-linked copy of
``.venv`` whose editable install points at it (``oldrev.environment``). Prints core count, wall
times, the ratio and the CPU utilisation of each run (children's user+system time over wall
time and cores).

    .venv/bin/python benchmarks/bench_suite.py --old 9283d5c [--work DIR] [--quick-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oldrev import ROOT, checkout, environment  # noqa: E402


def timed_suite(python: Path, cwd: Path, marker: str | None, tests: tuple[str, ...] = ()
                ) -> tuple[float, float, str]:
    """(wall seconds, CPU utilisation in [0, 1], pytest's last line) of one suite run."""
    args = [str(python), "-m", "pytest", "-p", "no:cacheprovider"] + (["-m", marker] if marker else []) + list(tests)
    env = dict(os.environ, ZSAD_REQUIRE_SERVERS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
    if out.returncode != 0:
        print(out.stdout[-3000:], out.stderr[-2000:], file=sys.stderr)
    return wall, cpu / wall / (os.cpu_count() or 1), last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="a1ea2a7", help="the old revision (default: before the detector interface)")
    ap.add_argument("--work", default=None, help="folder for the old checkout (default: a temp folder)")
    ap.add_argument("--quick-only", action="store_true", help="only the quick tier (-m 'not slow')")
    ap.add_argument("--tests", nargs="*", default=(), help="only these test files (both trees must have them)")
    ap.add_argument("--quick", action="store_true", help="one small test file, quick tier: a minute")
    a = ap.parse_args()
    if a.quick:
        a.quick_only, a.tests = True, ["tests/test_geometry.py"]
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-bench-suite-"))
    old = checkout(work, a.old, Path(__file__), "bench_suite.py")
    sides = {"old": (environment(old), old), "new": (ROOT / ".venv" / "bin" / "python", ROOT)}
    print(f"{os.cpu_count()} cores; old = {a.old}, new = this checkout\n")
    print("| tier | old wall (s) | new wall (s) | new / old | old CPU use | new CPU use | old result | new result |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for tier, marker in [("quick (-m 'not slow')", "not slow")] + ([] if a.quick_only else [("full", None)]):
        got = {side: timed_suite(py, cwd, marker, tuple(a.tests)) for side, (py, cwd) in sides.items()}
        (ow, oc, ol), (nw, nc, nl) = got["old"], got["new"]
        print(f"| {tier} | {ow:.0f} | {nw:.0f} | {nw / ow:.2f} | {oc:.0%} | {nc:.0%} | {ol} | {nl} |", flush=True)


if __name__ == "__main__":
    main()

"""Wall time of CLI commands on a fully cached demo store: plain (the default) vs ``--prefect``.

``--prefect`` runs the command as a Prefect flow in ephemeral mode, which starts a local API
server in every process: what every ``zsad aggregate``/``evaluate`` paid before commands ran
as plain Python. Each command is a fresh process (imports included), timed ``--repeat`` times;
the median is reported with the ratio.

    .venv/bin/python benchmarks/bench_startup.py [--work DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZSAD = str(Path(sys.executable).with_name("zsad"))


def run(args: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([ZSAD, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"zsad {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="folder for the cached demo store (default: a temp folder)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one process each: about a minute")
    a = ap.parse_args()
    if a.quick:
        a.repeat = 1
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-bench-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(work / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    store, data = str(work / "store.zarr"), work / "data"
    if not (work / "store.zarr").exists():
        subprocess.run([sys.executable, "-c", "from zsad.datasets import SyntheticSpec, write_synthetic; "
                        f"write_synthetic({str(data)!r}, SyntheticSpec(image_size=128))"], check=True, cwd=ROOT)
        run(["precompute", "--dataset", "synthetic", "--root", str(data), "--store", store], env, work)
        run(["evaluate", "--store", store, "--out", str(work / "res")], env, work)  # aggregates, stores thresholds
        run(["predict", str(data / "pill" / "test"), "--class", "pill", "--store", store, "--out",
             str(work / "pred")], env, work)
    commands = {
        "aggregate": ["aggregate", "--store", store],
        "evaluate": ["evaluate", "--store", store, "--out", str(work / "res")],
        "predict (8 cached images, PNGs)": ["predict", str(data / "pill" / "test"), "--class", "pill", "--store",
                                            store, "--out", str(work / "pred")],
        "cache list": ["cache", "list", "--store", store],
    }
    print(f"cached demo store {store}; median of {a.repeat} fresh processes each, wall seconds\n")
    print("| command | plain | --prefect (ephemeral server) | ratio |\n|---|---:|---:|---:|")
    for name, args in commands.items():
        plain = statistics.median(run(args, env, work) for _ in range(a.repeat))
        if name in ("aggregate", "evaluate"):
            flow = statistics.median(run(args + ["--prefect"], env, work) for _ in range(a.repeat))
            print(f"| zsad {name} | {plain:.2f} | {flow:.2f} | {flow / plain:.1f}x |")
        else:
            print(f"| zsad {name} | {plain:.2f} | - | - |")


if __name__ == "__main__":
    main()

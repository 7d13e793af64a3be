"""Every detector through the aggregation engine, this checkout against an older revision in one
run: the same variants of the four detectors (zero-shot, few-shot, tile-mutual, MuSc alone, its
seed hybrid and foreground hybrid) evaluated on one synthetic store, each tree on its own copy.
Prints each tree's wall and CPU time and whether the two ``metrics.json`` and every
``aggregate`` unit's sample score are identical.

    .venv/bin/python benchmarks/bench_detectors.py [--old a1ea2a7] [--images 4] [--quick]

``--quick``: 2 images per defect kind, 96 px, tiny models (seconds; the suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oldrev import ROOT, checkout, environment  # noqa: E402

VARIANTS = ("mode=zero-shot,mutual;fusion=harmonic,geometric", "mode=few-shot;shots=2",
            "mode=musc", "mode=musc;combine=mean", "mode=musc;foreground=restrict;r_list=1-3")
CONFIG = "musc-tiny"


def step(python: Path, cwd: Path, *args: str) -> float:
    """Run ``zsad`` of the tree at ``cwd`` with ``python``; its wall seconds."""
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_API")}
    t0 = time.perf_counter()
    subprocess.run([str(python), "-m", "zsad.flows.cli", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def precompute(work: Path, images: int, size: int) -> tuple[Path, Path]:
    """The synthetic data set (test and train splits) and its store, with patches and MuSc tokens."""
    from zsad.datasets.synthetic import SyntheticSpec, write_synthetic
    root = write_synthetic(work / "data", SyntheticSpec(image_size=size, n_good=images, n_per_defect=max(1, images // 2),
                                                        n_train=2, defects=("scratch", "stain")))
    store = work / "store.zarr"
    for split in ("test", "train"):
        step(Path(sys.executable), ROOT, "precompute", "--dataset", "synthetic", "--root", str(root), "--store",
             str(store), "--config", CONFIG, "--patches", "--split", split)
    return Path(root), store


def evaluate(python: Path, cwd: Path, store: Path, out: Path) -> tuple[float, float]:
    """Every variant of ``VARIANTS`` evaluated; (wall s, CPU s of the children)."""
    before = os.times()
    wall = sum(step(python, cwd, "evaluate", "--store", str(store), "--dataset", "synthetic", "--config", CONFIG,
                    "--variants", v, "--out", str(out / str(i))) for i, v in enumerate(VARIANTS))
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def scores(store: Path) -> dict[str, float]:
    """unit key -> sample score of every ``aggregate`` unit."""
    out = {}
    for f in sorted(store.glob("aggregate/*/*/*/*/*/zarr.json")):
        attrs = json.loads(f.read_text()).get("attributes", {})
        out[str(f.parent.relative_to(store))] = attrs.get("sample_score")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", default="a1ea2a7", help="the older revision (default: before the detector interface)")
    p.add_argument("--images", type=int, default=4, help="normal test images per class")
    p.add_argument("--quick", action="store_true", help="2 images, 96 px: seconds")
    a = p.parse_args(argv)
    images, size = (2, 96) if a.quick else (a.images, 128)
    print(f"cores: {os.cpu_count()}; old: {a.old}; variants: {' | '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, store = precompute(work, images, size)
        old_src = checkout(work, a.old, Path(__file__), "bench_detectors.py")
        trees = {"old": (environment(old_src), old_src), "new": (Path(sys.executable), ROOT)}
        results = {}
        for name, (python, cwd) in trees.items():
            copy = work / f"{name}.zarr"
            shutil.copytree(store, copy)
            wall, cpu = evaluate(python, cwd, copy, work / f"out-{name}")
            metrics = [json.loads((work / f"out-{name}" / str(i) / "metrics.json").read_text())
                       for i in range(len(VARIANTS))]
            results[name] = (wall, cpu, metrics, scores(copy))
            print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU ({cpu / wall:.2f} cores busy), "
                  f"{len(results[name][3])} aggregate units")
    (_, _, m_old, s_old), (_, _, m_new, s_new) = results["old"], results["new"]
    same_metrics, same_scores = m_old == m_new, s_old == s_new
    print(f"metrics.json identical: {same_metrics}; every unit's sample score identical: {same_scores} "
          f"({len(s_new)} units)")
    if not (same_metrics and same_scores):
        diff = sorted(k for k in set(s_old) | set(s_new) if s_old.get(k) != s_new.get(k))
        print("differing units:", *diff[:10], sep="\n  ")
        raise SystemExit(1)


if __name__ == "__main__":
    main()

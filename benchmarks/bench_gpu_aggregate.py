"""Evaluation's pixel side on a GPU (``--device cuda``) against the host's numpy path, one run.

A VisA-shaped store (``bench_visa_scale.generate``) is aggregated with exact metrics by the host
path and by the torch path on ``--device``, in one process, one thread (the per-image cost of
each path), for the seed variant and the 72-variant grid; the fused stage is built first (its
own line). The metrics of the two paths are compared (largest difference over every class,
variant and metric). Needs no Prefect or Dask: it calls ``zsad.tasks.aggregate`` directly.

    python benchmarks/bench_gpu_aggregate.py --device cuda [--images 300] [--work DIR]
    .venv/bin/python benchmarks/bench_gpu_aggregate.py --device cpu --images 20   # the torch path on CPU tensors
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

GRID = {"fusion": ("harmonic", "arithmetic", "geometric"), "top_fraction": (0.25, 0.5, 1.0),
        "scale_by_tile_score": (True, False), "seed_states": (True, False), "logit_scale": (None, 1 / 0.07)}


def variants(kind: str):
    import itertools

    from zsad.config import AggregateConfig
    if kind == "seed":
        return [AggregateConfig()]
    return [AggregateConfig(**dict(zip(GRID, combo))) for combo in itertools.product(*GRID.values())]


def timed(fn):
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="8 images, torch on the CPU: seconds")
    a = ap.parse_args()
    if a.quick:
        a.images, a.device = 8, "cpu"
    import torch

    from bench_visa_scale import generate
    from zsad.stores import StageStore, Unit
    from zsad.tasks.aggregate import AggregateRun, VariantJob, aggregate_units
    from zsad.tasks.fused import build_fused
    from zsad.tasks.plan import plan_stages
    from zsad.config import PipelineConfig
    from zsad.evaluation import evaluate_classes
    torch.set_num_threads(1)
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-gpu-agg-"))
    t = time.perf_counter()
    generate(work, 0, a.images, "tiny")
    print(f"generated {a.images} VisA-shaped images in {time.perf_counter() - t:.0f} s")
    store, plan = str(work / "store.zarr"), plan_stages(PipelineConfig.tiny())
    units = [Unit("visa", "capsules", "test", f"{i:05d}") for i in range(a.images)]
    t_fused, _ = timed(lambda: build_fused(StageStore(store), plan, units,
                                           ("harmonic", "arithmetic", "geometric")))
    where = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "CPU tensors"
    print(f"\n{a.images} images; one thread; torch path on {where}\n")
    print("| what | host numpy (ms/image) | torch on device (ms/image) | host / device | largest metric difference |")
    print("|---|---:|---:|---:|---:|")
    print(f"| fused stage built once (3 fusions) | {t_fused / a.images * 1000:.1f} | - | - | - |")
    for kind in ("seed", "grid"):
        jobs = tuple(VariantJob(plan.aggregate_hash(c), c) for c in variants(kind))
        runs = {
            d: AggregateRun(StageStore(store, read_only=True), plan, jobs, evaluate=True, device=d)
            for d in (None, a.device)
        }
        aggregate_units(runs[a.device], units[:2])  # warm-up: CUDA context, kernels
        t_host, host = timed(lambda: aggregate_units(runs[None], units))
        t_dev, dev = timed(lambda: aggregate_units(runs[a.device], units))
        worst = 0.0
        for job in jobs:
            want = evaluate_classes(
                {c: e for (vh, c), e in host.evaluators(runs[None]).items() if vh == job.variant_hash}
            )
            got = evaluate_classes({c: e for (vh, c), e in dev.evaluators(runs[a.device]).items()
                                    if vh == job.variant_hash})
            for cls, row in want.items():
                for k, v in row.items():
                    if not (math.isnan(v) and math.isnan(got[cls][k])):
                        worst = max(worst, abs(v - got[cls][k]))
        label = "seed variant, exact metrics" if kind == "seed" else f"grid of {len(jobs)}, exact metrics"
        print(f"| {label} | {t_host / a.images * 1000:.1f} | {t_dev / a.images * 1000:.1f} | "
              f"{t_host / t_dev:.2f}x | {worst:.1e} |")


if __name__ == "__main__":
    main()

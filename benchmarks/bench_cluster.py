"""Precompute on a ``dask.distributed`` cluster: images per second with 1 and 2 worker processes
(one thread each), against one plain process, and the scheduler's overhead per task.

Each run starts a fresh ``LocalCluster`` (so each worker loads its models once, included in
the time, as in a real first run) and precomputes into a fresh local store. Models: ``tiny``
(store and scheduling costs dominate) or ``published`` (random weights in the published
architectures: IS-Net, SAM ViT-B with an 8x8 point grid, CLIP ViT-B-16-plus-240, CLIPSeg
rd64-refined; the paper's SAM ViT-H at 32x32 takes ~142 s per image on this CPU, see
``bench_models.py``). CPU utilisation is the whole machine's during each run.

    .venv/bin/python benchmarks/bench_cluster.py --models tiny --images 32
    .venv/bin/python benchmarks/bench_cluster.py --models published --images 6
    .venv/bin/python benchmarks/bench_cluster.py --models published --gpus 2   # a GPU node (dask-cuda)
"""

from __future__ import annotations

from zsad.flows.command_requests import PrecomputeRequest
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def config(models: str, device: str):
    from zsad.config import ModelSpec, PipelineConfig, SamGeneratorConfig
    if models == "tiny":
        return PipelineConfig.tiny(device=device)
    # random weights give no confident masks: the quality filters are opened (as in ``tiny``) so
    # that every stage runs, CLIP and CLIPSeg included
    sam = SamGeneratorConfig(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7)
    return PipelineConfig(clip=ModelSpec("clip", "ViT-B-16-plus-240"), clipseg=ModelSpec("clipseg", "rd64-refined"),
                          sam=ModelSpec("sam", "vit_b"), isnet=ModelSpec("isnet", "isnet"), sam_generator=sam,
                          device=device)


def busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall clock)."""
    import psutil
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0), time.perf_counter()


def timed(fn) -> dict:
    b0, w0 = busy_seconds()
    out = fn()
    b1, w1 = busy_seconds()
    return {"wall": w1 - w0, "util": (b1 - b0) / ((w1 - w0) * (os.cpu_count() or 1)), "out": out}


def cluster(workers: int, gpus: int):
    if gpus:
        from dask_cuda import LocalCUDACluster  # one worker per GPU (CUDA_VISIBLE_DEVICES set per worker)
        return LocalCUDACluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, silence_logs=40)
    from distributed import LocalCluster
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=40)


def task_overhead(address: str, n: int = 200) -> float:
    """Seconds per trivial task, submitted one after another (the round trip a shard pays)."""
    from distributed import Client
    with Client(address) as client:
        client.submit(int, 0, pure=False).result()
        t = time.perf_counter()
        for i in range(n):
            client.submit(int, i, pure=False).result()
        return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", choices=["tiny", "published"], default="tiny")
    ap.add_argument("--images", type=int, default=32, help="test images (2 classes)")
    ap.add_argument("--image-size", type=int, default=384)
    ap.add_argument("--gpus", type=int, default=0, help="N > 0: workers 1..N on a GPU node (dask-cuda)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="16 images of 128 px: seconds")
    a = ap.parse_args()
    if a.quick:
        a.images, a.image_size = 16, 128
    from zsad.flows.precompute import run_precompute
    from zsad.datasets import SyntheticSpec, read_dataset, write_synthetic
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-bench-cluster-"))
    per_class = max(1, a.images // 2)
    n_def = max(1, per_class // 8)
    write_synthetic(work / "data", SyntheticSpec(image_size=a.image_size, n_good=per_class - 4 * n_def,
                                                 n_per_defect=n_def))
    samples = read_dataset("synthetic", str(work / "data"))
    n, device = len(samples), "cuda" if a.gpus else "cpu"
    cfg = config(a.models, device)
    rows = []
    if not a.gpus:  # one plain process, torch on every core: the baseline a cluster must beat
        r = timed(
            lambda: run_precompute(
                PrecomputeRequest(store=str(work / "plain.zarr"), progress=False, name="synthetic"),
                samples=samples,
                cfg=cfg,
            )
        )
        rows.append(("one process, no Dask", r, None))
    for workers in (range(1, a.gpus + 1) if a.gpus else (1, 2)):
        with cluster(workers, a.gpus) as c:
            r = timed(
                lambda: run_precompute(
                    PrecomputeRequest(
                        store=str(work / f"w{workers}.zarr"),
                        progress=False,
                        dask_address=c.scheduler_address,
                        name="synthetic",
                    ),
                    samples=samples,
                    cfg=cfg,
                )
            )
            rows.append(
                (f"{workers} worker process{'es' if workers > 1 else ''}", r, task_overhead(c.scheduler_address))
            )
    base = next(r for name, r, _ in rows if name.startswith("1 worker"))["wall"]
    print(f"\nprecompute of {n} images ({a.image_size} px, 2 classes), {a.models} models on {device}; "
          f"{os.cpu_count()} cores; each run includes its model loads\n")
    print("| run | wall s | images/s | vs 1 worker | images done/failed | shards | models loaded per worker | CPU util "
          "| task overhead |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r, overhead in rows:
        out = r["out"]
        loads = statistics.mean(sum(w.models_loaded.values()) for w in out.workers.values())
        ov = f"{1000 * overhead:.1f} ms" if overhead is not None else "-"
        print(f"| {name} | {r['wall']:.1f} | {n / r['wall']:.3f} | {base / r['wall']:.2f}x | "
              f"{len(out.done)}/{len(out.failed)} | {out.shards} | "
              f"{loads:.0f} | {100 * r['util']:.0f}% | {ov} |")


if __name__ == "__main__":
    main()

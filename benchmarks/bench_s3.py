"""A shared cache on object storage vs a local disk: a real S3-compatible server (moto's, in
its own process on 127.0.0.1) against a local Zarr store, same data, same process.

Reports, per image: the cold precompute (tiny models: mostly store writes), the warm (fully
cached) precompute with and without the unit index (``stores.index``), a warm aggregate, and
``zsad cache list``; each warm figure is the median of ``--repeat`` runs, with its ratio to the
local store. Moto answers from memory on the same machine, so the ratios are a lower bound of
what a remote service's latency adds: what the index saves is round trips, which matter more
there.

    .venv/bin/python benchmarks/bench_s3.py [--images-per-class 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def timed(fn, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=32, help="test images per class (2 classes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-bench-s3-"))
    from stores.s3server import DUMMY_CREDENTIALS, LocalS3
    os.environ.update(DUMMY_CREDENTIALS)
    from flows.aggregate import run_variants
    from flows.cache import list_stages
    from flows.precompute import run_precompute
    from tasks.runtime import open_store
    from zsad.config import PipelineConfig
    from zsad.datasets import SyntheticSpec, read_dataset, write_synthetic

    per_defect = max(1, a.images_per_class // 8)
    spec = SyntheticSpec(image_size=128, n_good=a.images_per_class - 4 * per_defect, n_per_defect=per_defect)
    write_synthetic(work / "data", spec)
    samples, cfg = read_dataset("synthetic", str(work / "data")), PipelineConfig.tiny()
    n = len(samples)
    with LocalS3(log=work / "moto.log") as s3:
        os.environ["ZSAD_STORAGE_OPTIONS"] = __import__("json").dumps(s3.storage_options())
        remote = s3.make_bucket("zsad-bench") + "/store.zarr"
        local = str(work / "store.zarr")
        rows = []

        def pre(url):
            return lambda: run_precompute(samples, "synthetic", url, cfg, progress=False)

        cold = {url: timed(pre(url)) for url in (local, remote)}
        rows.append(("cold precompute (tiny models)", cold[local], cold[remote]))
        warm_local = timed(pre(local), a.repeat)
        warm_indexed = timed(pre(remote), a.repeat)
        open_store(remote).index.enabled = False
        warm_plain = timed(pre(remote), a.repeat)
        open_store(remote).index.enabled = True
        rows.append(("warm precompute, no unit index (before)", warm_local, warm_plain))
        rows.append(("warm precompute, unit index (after)", warm_local, warm_indexed))
        for url in (local, remote):
            run_variants(url, "synthetic", "tiny", "seed")  # write the variant once
        agg = {url: timed(lambda u=url: run_variants(u, "synthetic", "tiny", "seed", scheduler="synchronous"),
                          a.repeat) for url in (local, remote)}
        rows.append(("warm aggregate, one variant (synchronous)", agg[local], agg[remote]))
        listed = {url: timed(lambda u=url: list_stages(u), a.repeat) for url in (local, remote)}
        rows.append(("zsad cache list (whole store)", listed[local], listed[remote]))

    print(f"\n{n} images (2 classes, {spec.image_size} px), tiny models, moto S3 server on 127.0.0.1, "
          f"median of {a.repeat}\n")
    print("| step | local ms/image | S3 ms/image | S3 / local |\n|---|---|---|---|")
    for name, lo, re in rows:
        print(f"| {name} | {1000 * lo / n:.1f} | {1000 * re / n:.1f} | {re / lo:.2f}x |")
    print(f"\nunit index speed-up on S3 (warm precompute): {warm_plain / warm_indexed:.1f}x")


if __name__ == "__main__":
    main()

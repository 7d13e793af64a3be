"""Requests per image on object storage, old code against new, and local-disk times.

A real S3-compatible server (moto's, its own process on 127.0.0.1) behind a counting proxy
(``tests/s3proxy.py``). Each step runs in a fresh process, as a CLI run would, with the code at
``--old-rev`` (``git archive``) and with this checkout, each on its own bucket:

* cold precompute (tiny models: the store's traffic, not the models', is what is counted);
* warm precompute (everything cached);
* aggregation of a first variant (``seed``: builds the fused maps, writes its scores);
* a second variant on the same fused maps (``top_fraction=0.5``): the per-variant cost;
* the first variant again (all cached).

Prints requests per image by method (HEAD/GET/PUT/LIST/DELETE), their ratio, and the wall
time of the same steps on a local store (old and new: local stores must not get slower). The
machine's core count and the steps' CPU utilisation are printed too.

    .venv/bin/python benchmarks/bench_s3.py [--sizes 32,128] [--old-rev a1ea2a7] [--skip-old]
"""

from __future__ import annotations

from zsad.flows.command_requests import AggregateRequest, PrecomputeRequest
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from oldrev import checkout as old_checkout, environment  # noqa: E402
STEPS = ("cold precompute", "warm precompute", "aggregate: first variant", "aggregate: second variant",
         "aggregate: first variant again")


def step(name: str, data: str, store: str) -> None:
    """One step in this process (``--step``)."""
    from zsad.flows.aggregate import run_variants
    from zsad.flows.precompute import run_precompute
    from zsad.config import PipelineConfig
    from zsad.datasets import read_dataset
    if name.endswith("precompute"):
        run_precompute(
            PrecomputeRequest(store=store, progress=False, name="synthetic"),
            samples=read_dataset("synthetic", data),
            cfg=PipelineConfig.tiny(),
        )
    else:
        variants = "top_fraction=0.5" if name.endswith("second variant") else "seed"
        run_variants(
            AggregateRequest(
                store=store, dataset="synthetic", config="tiny", variants=variants, scheduler="synchronous"
            )
        )


def run_step(name: str, data: Path, store: str, src: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU seconds) of ``step`` in a fresh process running the code at ``src``."""
    r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    old = src != HERE.parents[1]
    script = src / "benchmarks" / "bench_s3_step.py" if old else HERE
    python = environment(src) if old else Path(sys.executable)  # the old tree's own imports, not this checkout's
    res = subprocess.run([str(python), str(script), "--step", name,
                          "--data", str(data), "--store", store], env={**env, "PYTHONPATH": str(src)},
                         cwd=str(src), capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{name} ({src}) failed:\n{res.stderr[-3000:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t, sum(getattr(r1, f) - getattr(r0, f) for f in ("ru_utime", "ru_stime"))


def checkout(work: Path, rev: str | None) -> Path:
    """This checkout (``rev`` None) or the code at ``rev`` with this file as its step runner."""
    if rev is None:
        return HERE.parents[1]
    return old_checkout(work, rev, HERE, "bench_s3_step.py")


def methods(log: list[tuple[str, str]]) -> dict[str, int]:
    """Requests by method; a GET of a bucket (``/bucket?list-type=2...``) is a LIST."""
    out: dict[str, int] = {}
    for method, path in log:
        kind = "LIST" if method == "GET" and path.strip("/").count("/") == 0 else method
        out[kind] = out.get(kind, 0) + 1
    return out


def requests_at(s3, proxy, src: Path, data: Path, bucket: str, env: dict[str, str]) -> dict[str, dict[str, int]]:
    store = s3.make_bucket(bucket) + "/store.zarr"
    out = {}
    for name in STEPS:
        proxy.reset()
        run_step(name, data, store, src, env)
        out[name] = methods(list(proxy.log))
    return out


def synthetic(work: Path, images: int) -> Path:
    from zsad.datasets import SyntheticSpec, write_synthetic
    per_class = images // 2
    per_defect = max(1, per_class // 8)
    spec = SyntheticSpec(image_size=128, n_good=per_class - 4 * per_defect, n_per_defect=per_defect)
    return write_synthetic(work / f"data-{images}", spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,128", help="images (2 classes); old code and local times at the first")
    ap.add_argument("--old-rev", default="a1ea2a7", help="the code to compare with (a revision with the one-name install)")
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="4 images, this code only: under a minute")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.skip_old = "4", True
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-bench-s3-"))
    sys.path.insert(0, str(HERE.parents[1]))
    sys.path.insert(0, str(HERE.parents[1] / "tests"))  # the test scaffolding: moto's server and the proxy
    from s3proxy import S3Proxy
    from s3server import LocalS3
    sizes = [int(x) for x in a.sizes.split(",")]
    data = {n: synthetic(work, n) for n in sizes}
    n = sizes[0]
    codes = {"new": checkout(work, None)} | ({} if a.skip_old else {"old": checkout(work, a.old_rev)})
    counts: dict[str, dict[str, dict[str, int]]] = {}
    times: dict[str, dict[str, tuple[float, float]]] = {}
    with LocalS3(log=work / "moto.log") as s3, S3Proxy(s3.endpoint_url) as proxy:
        env = {**s3.env(), "ZSAD_STORAGE_OPTIONS": json.dumps({"endpoint_url": proxy.endpoint_url}),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
        for who, src in codes.items():
            counts[who] = requests_at(s3, proxy, src, data[n], f"bench-{who}", env)
            times[who] = {name: run_step(name, data[n], str(work / f"local-{who}.zarr"), src, env) for name in STEPS}
        more = {m: requests_at(s3, proxy, codes["new"], data[m], f"bench-new-{m}", env) for m in sizes[1:]}
    print(f"\n{n} images (2 classes, 128 px), tiny models, moto S3 behind a counting proxy; "
          f"{os.cpu_count()} cores\n")
    print("| step | " + " | ".join(f"{w} requests/image (by method)" for w in codes) +
          (" | old / new |" if "old" in codes else " |"))
    print("|---|" + "---|" * (len(codes) + ("old" in codes)))
    for name in STEPS:
        cells = []
        for w in codes:
            c = counts[w][name]
            cells.append(f"{sum(c.values()) / n:.1f} ({', '.join(f'{k} {v / n:.1f}' for k, v in sorted(c.items()))})")
        ratio = f" | {sum(counts['old'][name].values()) / max(1, sum(counts['new'][name].values())):.1f}x" \
            if "old" in codes else ""
        print(f"| {name} | " + " | ".join(cells) + ratio + " |")
    if more:
        m = max(more)
        print(f"\nnew code at {n} and {m} images: requests = per run + per image x images (two-point fit)\n")
        print(f"| step | requests/image at {m} | per image | per run |\n|---|---|---|---|")
        for name in STEPS:
            r0, r1 = sum(counts["new"][name].values()), sum(more[m][name].values())
            slope = (r1 - r0) / (m - n)
            print(f"| {name} | {r1 / m:.2f} | {slope:.2f} | {r0 - slope * n:.0f} |")
    print("\nlocal store, wall ms per image (CPU utilisation of the step's process, of "
          f"{os.cpu_count()} cores):\n")
    print("| step | " + " | ".join(codes) + (" | new / old |" if "old" in codes else " |"))
    print("|---|" + "---|" * (len(codes) + ("old" in codes)))
    for name in STEPS:
        cells = [
            f"{1000 * times[w][name][0] / n:.1f} ({100 * times[w][name][1] / times[w][name][0] / (os.cpu_count() or 1):.0f}%)"
            for w in codes
        ]
        ratio = f" | {times['new'][name][0] / times['old'][name][0]:.2f}x" if "old" in codes else ""
        print(f"| {name} | " + " | ".join(cells) + ratio + " |")


if __name__ == "__main__":
    if "--step" in sys.argv:
        p = argparse.ArgumentParser()
        p.add_argument("--step")
        p.add_argument("--data")
        p.add_argument("--store")
        s = p.parse_args()
        step(s.step, s.data, s.store)
    else:
        main()

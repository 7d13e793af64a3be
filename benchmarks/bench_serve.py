"""``zsad serve``'s overhead and throughput on this machine (tiny random-weight models).

Overhead: one image through HTTP (upload, spool, store path, JSON) against the same pixels
through ``zsad.predict.predict_image`` in the same process, interleaved, p50/p95. Every HTTP
image is new to the store (the same pixels with a different PNG text chunk: a new sha256), so
both sides compute everything. Also: a re-upload of bytes already scored (the cache's answer).
Throughput: 1, 4 and 16 concurrent clients on loopback, each sending ``--per-client`` new
images (bounded by ``--max-s`` too): images/s, p95 latency, errors.

    .venv/bin/python benchmarks/bench_serve.py [--n 8] [--per-client 2]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def png(img: np.ndarray, tag: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("zsad-bench", tag)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="images for the overhead comparison")
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--max-s", type=float, default=120.0)
    ap.add_argument("--device", default=None, help="cpu, cuda ... (default: the tiny config's)")
    ap.add_argument("--quick", action="store_true", help="2 images, one per client: under a minute")
    a = ap.parse_args()
    if a.quick:
        a.n, a.per_client = 2, 1
    from serving import calibrated_store, live_server
    from zsad.datasets import SyntheticSpec, write_synthetic
    from zsad.datasets.synthetic import make_image
    from zsad.flows.configs import load_pipeline_config
    from zsad.serve.inline_requests import ServeRequest
    from zsad.pipeline import Models
    from zsad.predict import predict_image
    work = Path(tempfile.mkdtemp(prefix="zsad-bench-serve-"))
    root = write_synthetic(work / "data", SyntheticSpec(image_size=128, n_good=2, n_per_defect=1, n_train=0,
                                                        defects=("scratch",)))
    store = calibrated_store(str(work / "s.zarr"), str(root))
    cfg = load_pipeline_config("tiny", device=a.device)
    models = Models.load(cfg)
    images = [make_image("pill", "scratch" if i % 2 else None, 100 + i, 256)[0] for i in range(a.n)]
    t_cpu0, t_wall0 = time.process_time(), time.perf_counter()
    with live_server(ServeRequest(store=store, out=str(work / "serve"), device=a.device), warm=True) as (url, _):
        direct, http, cached = [], [], []
        with httpx.Client(base_url=url, timeout=300) as c:
            for i, img in enumerate(images):
                t = time.perf_counter()
                predict_image(img, "pill", models, cfg)
                direct.append(time.perf_counter() - t)
                body = png(img, f"overhead-{i}")
                t = time.perf_counter()
                assert c.post("/v1/predict", data={"class": "pill"}, files=[("files", ("a.png", body))]).status_code == 200
                http.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert c.post("/v1/predict", data={"class": "pill"}, files=[("files", ("a.png", body))]).status_code == 200
                cached.append(time.perf_counter() - t)
        print(f"cores: {os.cpu_count()}; tiny models, 256 px synthetic pills; {a.n} images each\n")
        print("| path | p50 ms | p95 ms |\n|---|---:|---:|")
        for name, xs in (("predict_image, same process", direct), ("HTTP /v1/predict, new image", http),
                         ("HTTP /v1/predict, bytes already scored", cached)):
            print(f"| {name} | {pct(xs, 50):.0f} | {pct(xs, 95):.0f} |")
        p50d, p50h = pct(direct, 50), pct(http, 50)
        print(f"\noverhead at p50: {p50h - p50d:+.0f} ms ({(p50h / p50d - 1) * 100:+.1f} %); target <= 10 % + 20 ms "
              f"= {p50d * 0.1 + 20:.0f} ms\n")
        print("| clients | images | images/s | p95 ms | errors |\n|---:|---:|---:|---:|---:|")
        for clients in (1, 4, 16):
            lat, errors, lock = [], [0], threading.Lock()

            def client(k: int, start: float) -> None:
                with httpx.Client(base_url=url, timeout=300) as c:
                    for i in range(a.per_client):
                        if time.perf_counter() - start > a.max_s:
                            return
                        body = png(images[(k + i) % len(images)], f"tp-{clients}-{k}-{i}")
                        t = time.perf_counter()
                        ok = c.post("/v1/predict", data={"class": "pill"}, files=[("files", ("a.png", body))])
                        with lock:
                            (lat.append(time.perf_counter() - t) if ok.status_code == 200 else None)
                            errors[0] += ok.status_code != 200
            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(k, start)) for k in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            print(f"| {clients} | {len(lat)} | {len(lat) / wall:.2f} | {pct(lat, 95):.0f} | {errors[0]} |")
    cpu, wall = time.process_time() - t_cpu0, time.perf_counter() - t_wall0
    print(f"\nCPU utilisation of this process: {cpu / wall * 100:.0f} % of one core over {wall:.0f} s "
          f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

"""Peak memory of scoring one image, by image size and config, old revision against this one.

Each measurement is a process of its own: it builds the config's models (random weights: memory
does not depend on their values; the paper config's SAM gets realistic survivors,
``zsad.models.sam_survivors``, so it keeps masks as trained weights would), scores a 256 px image
once (warm-up), then scores one synthetic image of the given megapixels with
``zsad.pipeline.score_image`` and draws its prediction panel (``zsad.predict.panel_png``): what
``zsad predict`` and the service do per image. It prints the RSS after warm-up (the models) and
the peak RSS while scoring (sampled every 5 ms): their difference is what the image costs. The
old revision runs this same script in a ``git archive`` of itself (``oldrev``).

The table: per config and size, old and new peak growth and their ratio, the new growth's
least-squares line in megapixels (the formula of its growth with pixels), core count and CPU use.

    .venv/bin/python benchmarks/bench_memory.py [--configs tiny,paper] [--sizes 1,4,12,25] [--old 867828a]
    .venv/bin/python benchmarks/bench_memory.py --quick      # tiny config, 0.25 and 1 MP (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _models(config: str, points_per_side: int):
    """The config's models, random weights (the paper config's SAM with realistic survivors)."""
    import dataclasses

    from zsad.config import PipelineConfig
    from zsad.models import build_clip, build_clipseg, build_isnet, build_sam
    from zsad.pipeline import Models
    cfg = PipelineConfig.tiny() if config == "tiny" else PipelineConfig.paper()
    if config != "tiny":
        cfg = dataclasses.replace(cfg, sam_generator=dataclasses.replace(cfg.sam_generator,
                                                                          points_per_side=points_per_side))
    models = Models(clip=build_clip(cfg.clip, device="cpu"), clipseg=build_clipseg(cfg.clipseg, device="cpu"),
                    sam=build_sam(cfg.sam, device="cpu", generator=cfg.sam_generator),
                    isnet=build_isnet(cfg.isnet, device="cpu"))
    if config != "tiny":
        from zsad.models.sam_survivors import install_survivors
        install_survivors(models.sam)
    return cfg, models


def _image(megapixels: float):
    """A synthetic pill image (defect included) resized to ``megapixels``, 4:3."""
    import numpy as np
    from PIL import Image

    from zsad.datasets.synthetic import make_image
    img, _ = make_image("pill", "scratch", 0, 256)
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    return np.asarray(Image.fromarray(img).resize((w, int(round(w * 3 / 4)))))


def measure_one(config: str, megapixels: float, points_per_side: int) -> dict:
    """In this process: RSS after the models and a warm-up, peak RSS while scoring the image."""
    import psutil

    from zsad.pipeline import embed_prompts, score_image
    from zsad.predict import panel_png
    proc, peak, stop = psutil.Process(), [0], threading.Event()
    cfg, models = _models(config, points_per_side)
    text = embed_prompts(models.clip, "pill", cfg)
    score_image(_image(0.0656), "pill", models, cfg, text)  # 256 x 256: loads and warms everything
    image = _image(megapixels)

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)
    base = proc.memory_info().rss
    peak[0] = base
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    r = score_image(image, "pill", models, cfg, text)
    panel_png(image_hw3=image, pixel_map_hw=r.pixel_map_hw, class_name="pill", score=r.sample_score,
              threshold=None, pixel_threshold=0.5, boxes_xyxy=r.tiles.boxes_xyxy)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    sampler.join()
    return {"base_mb": base / 1e6, "peak_mb": peak[0] / 1e6, "growth_mb": (peak[0] - base) / 1e6,
            "seconds": seconds, "cpu": cpu / max(seconds, 1e-9), "pixels": int(image.shape[0] * image.shape[1]),
            "masks": int(r.n_sam_masks)}


def _run(python: Path, script: Path, cwd: Path, config: str, mp: float, points: int) -> dict:
    args = [str(python), str(script), "--one", config, str(mp), "--points-per-side", str(points)]
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: (a, b)."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def _table(configs: list[str], sizes: list[float], sides: list[tuple], old_upto: float, points: int) -> None:
    """Measure and print each config and size on each side, then the fitted growth."""
    print("| config | MP | side | models MB | peak MB | image costs MB | s | CPU use | masks |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for config in configs:
        growth: dict[str, list[tuple[float, float]]] = {}
        for mp in sizes:
            for side, python, cwd in sides:
                if side == "old" and mp > old_upto:
                    continue
                script = cwd / "benchmarks" / ("bench_memory.py" if side == "new" else "bench_memory_runner.py")
                m = _run(python, script, cwd, config, mp, points)
                growth.setdefault(side, []).append((m["pixels"] / 1e6, m["growth_mb"]))
                print(f"| {config} | {m['pixels'] / 1e6:.2f} | {side} | {m['base_mb']:.0f} | {m['peak_mb']:.0f} | "
                      f"{m['growth_mb']:.0f} | {m['seconds']:.1f} | {m['cpu']:.2f} | {m['masks']} |", flush=True)
        for side, points_mb in growth.items():
            a0, b = fit([x for x, _ in points_mb], [y for _, y in points_mb])
            print(f"\n{config} {side}: image cost ~ {a0:.0f} MB + {b:.0f} MB per megapixel "
                  f"(least squares over {', '.join(f'{x:.1f}' for x, _ in points_mb)} MP)")
        if "old" in growth:
            both = [(o[0], n[1] / max(o[1], 1e-9)) for o, n in zip(growth["old"], growth["new"])]
            print(f"{config}: new/old image cost " + ", ".join(f"{r:.2f} at {x:.1f} MP" for x, r in both))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="tiny,paper")
    ap.add_argument("--sizes", default="1,4,12,25", help="megapixels, comma-separated")
    ap.add_argument("--old", default="867828a", help="the revision to compare with ('' to skip)")
    ap.add_argument("--old-upto", type=float, default=25.0, help="largest size the old revision runs (MP)")
    ap.add_argument("--points-per-side", type=int, default=8, help="the paper config's SAM grid (memory per pixel "
                    "does not depend on it; time does)")
    ap.add_argument("--quick", action="store_true", help="tiny config, 0.25 and 1 MP")
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "MP"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure_one(a.one[0], float(a.one[1]), a.points_per_side)))
        return
    configs, sizes = (["tiny"], [0.25, 1.0]) if a.quick else (a.configs.split(","), [float(s) for s in a.sizes.split(",")])
    sides = [("new", Path(sys.executable), ROOT)]
    with tempfile.TemporaryDirectory(prefix="zsad-bench-memory-") as tmp:
        if a.old:
            from oldrev import checkout, environment
            src = checkout(Path(tmp), a.old, Path(__file__), "bench_memory_runner.py")
            sides.insert(0, ("old", environment(src), src))
        print(f"bench_memory: {os.cpu_count()} cores; old = {a.old or '(skipped)'} (up to {a.old_upto:g} MP); paper "
              f"SAM grid {a.points_per_side}x{a.points_per_side} with realistic survivors; random weights, CPU; "
              f"{time.strftime('%Y-%m-%d')}")
        _table(configs, sizes, sides, a.old_upto, a.points_per_side)

if __name__ == "__main__":
    main()

"""Benchmark: re-aggregation (one variant, a grid; serial vs Dask) and the orchestration
overhead of a fully cached precompute.

1. Orchestration: a synthetic data set is precomputed with the tiny random models, then
   precomputed again; the second run does no model work, so its time per image is the cost of
   Prefect tasks + store checks.
2. Aggregation: a store is filled with arrays of the paper's shapes — 2 to 4 tiles of 352 px
   per 1024 x 768 image, 640-d CLIP embeddings, 882 prompts, 19 x 352 x 352 float16 CLIPSeg maps
   — so the numbers are those of a real cache (aggregation never looks at what made the arrays).

    .venv/bin/python benchmarks/bench_aggregate.py --images 32 --grid 36
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zsad.flows.settings import apply_defaults  # noqa: E402


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def orchestration(work: Path, n_images: int) -> tuple[float, float, int]:
    from zsad.datasets import SyntheticSpec, write_synthetic
    from zsad.flows.command_requests import PrecomputeRequest
    from zsad.flows.precompute import run_precompute
    per_class = max(1, n_images // 2)
    write_synthetic(work / "data", SyntheticSpec(image_size=128, n_good=per_class, n_per_defect=0, n_train=0))
    request = PrecomputeRequest(dataset="synthetic", root=str(work / "data"), store=str(work / "orchestration.zarr"),
                                config="tiny", progress=False)
    t1, first = timed(run_precompute, request)
    t2, again = timed(run_precompute, request)
    assert again.units_written == 0 and again.models_loaded == 0
    return t1, t2, first.n_images


def fill_paper_shaped_cache(store_url: str, n_images: int, seed: int = 0) -> float:
    """Write image/tiles/clip_image/clip_text/clipseg units with the paper's shapes; returns tiles/image."""
    from zsad.stores import StageStore, Unit, class_key, unit_key
    from zsad.tasks.plan import plan_stages
    from zsad.config import PipelineConfig
    from zsad.prompts import build_prompt_set
    rng = np.random.default_rng(seed)
    plan = plan_stages(PipelineConfig.tiny())
    h = plan.hashes
    st = StageStore(store_url)
    ps = build_prompt_set("capsules")
    text = rng.normal(size=(len(ps), 640)).astype(np.float32)
    st.write_unit(class_key("clip_text", h["clip_text"], "bench", "capsules"), {
        "emb_pd": (text, ("prompt", "embed")), "anomalous_p": (ps.anomalous_p, ("prompt",)),
        "seed_extension_p": (ps.seed_extension_p, ("prompt",))}, {"texts": list(ps.texts), "logit_scale": 100.0})
    tiles_total = 0
    for i in range(n_images):
        unit, sha = Unit("bench", "capsules", "test", f"{i:04d}"), f"sha{i}"
        t = int(rng.integers(2, 5))
        tiles_total += t
        x0 = rng.integers(0, 1024 - 352, t)
        y0 = rng.integers(0, 768 - 352, t)
        boxes = np.stack([x0, y0, x0 + 352, y0 + 352], 1).astype(np.int32)
        st.write_unit(unit_key("image", h["image"], unit), {}, {"path": "", "sha256": sha, "height": 768, "width": 1024,
                                                                 "label": i % 2, "mask_path": None}, source=sha)
        st.write_unit(unit_key("tiles", h["tiles"], unit), {"boxes_xyxy": (boxes, ("tile", "corner")),
                      "component_t": (np.arange(1, t + 1, dtype=np.int32), ("tile",)),
                      "kind_t": (np.zeros(t, np.int8), ("tile",))}, source=sha)
        st.write_unit(unit_key("clip_image", h["clip_image"], unit),
                      {"emb_td": (rng.normal(size=(t, 640)).astype(np.float32), ("tile", "embed"))}, source=sha)
        maps = rng.random((t, 19, 352, 352), dtype=np.float32).astype(np.float16)
        st.write_unit(unit_key("clipseg", h["clipseg"], unit), {"maps_tlhw": (maps, ("tile", "prompt", "y", "x"))},
                      source=sha)
    return tiles_total / n_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--grid", type=int, default=36, choices=[6, 36, 72],
                    help="variants in the grid timing (72 = `grid`, with both logit scales)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--quick", action="store_true", help="4 images, a grid of 6: seconds")
    args = ap.parse_args()
    if args.quick:
        args.images, args.grid = 4, 6
    work = Path(args.workdir or tempfile.mkdtemp(prefix="zsad-bench-"))
    apply_defaults(work)
    from zsad.flows.aggregate import run_variants
    from zsad.flows.command_requests import AggregateRequest
    from zsad.tasks import worker

    t_first, t_cached, n_small = orchestration(work, args.images)
    print(f"\nzsad benchmark, {os.cpu_count()} CPU cores", flush=True)
    print(
        f"precompute {n_small} images (tiny models), first run : {t_first:7.2f} s ({t_first / n_small * 1000:.0f} ms/image)"
    )
    print(
        f"precompute again, fully cached (orchestration): {t_cached:7.2f} s ({t_cached / n_small * 1000:.0f} ms/image;"
        f" 0 units written, 0 models loaded; {t_first / t_cached:.0f}x faster)",
        flush=True,
    )

    store = str(work / "paper-shaped.zarr")
    tpi = fill_paper_shaped_cache(store, args.images)
    print(f"aggregation on {args.images} paper-shaped images (1024x768, {tpi:.2f} tiles/image, 19x352x352 maps):",
          flush=True)
    grid = {72: "grid", 36: "fusion=harmonic,arithmetic,geometric;top_fraction=0.25,0.5,1;"
                             "scale_by_tile_score=true,false;seed_states=true,false",
            6: "fusion=harmonic,arithmetic,geometric;top_fraction=0.25,0.5"}[args.grid]
    for variants, label, count in (("seed", "one variant", 1), (grid, f"grid of {args.grid}", args.grid)):
        serial = None
        for scheduler in ("synchronous", "threads", "processes"):
            worker.forget_stores()
            request = AggregateRequest(store=store, dataset="bench", config="tiny", variants=variants,
                                       scheduler=scheduler, chunk=4, evaluate=True)
            t, _ = timed(run_variants, request)
            serial = serial or t
            print(f"  {label + ', ' + scheduler:<30}: {t:8.2f} s ({t / (args.images * count) * 1000:6.1f} ms per "
                  f"image-variant, {serial / t:4.2f}x vs serial)", flush=True)


if __name__ == "__main__":
    main()

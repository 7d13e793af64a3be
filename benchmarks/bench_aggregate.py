"""Benchmark: re-aggregation (one variant, the grid; serial vs Dask) and the orchestration
overhead of a fully cached precompute.

Builds a synthetic data set and caches it with tiny random-weight models whose CLIPSeg runs at
the real 352 px input, so the cached maps have the paper's shape (T, 19, 352, 352) and the
aggregation work is the real one. Prints one table of times and ratios measured in this run.

    .venv/bin/python benchmarks/bench_aggregate.py --images 48
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.settings import apply_defaults  # noqa: E402


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48, help="test images in total (two classes)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="zsad-bench-"))
    apply_defaults(work)
    from flows.aggregate import run_variants
    from flows.precompute import precompute
    from tasks import runtime
    from zsad.config import ModelSpec, PipelineConfig, SamGeneratorConfig, TilingConfig, to_jsonable
    from zsad.datasets import SyntheticSpec, write_synthetic

    per_class = max(1, args.images // 2)
    n_def = max(1, per_class // 8)
    spec = SyntheticSpec(image_size=args.size, n_good=per_class - 4 * n_def, n_per_defect=n_def, n_train=0)
    write_synthetic(work / "data", spec)
    cfg = dataclasses.replace(PipelineConfig.tiny(), clipseg=ModelSpec("clipseg", "tiny-352"),
                              tiling=TilingConfig(min_tile=352),
                              sam_generator=SamGeneratorConfig(points_per_side=4, pred_iou_thresh=0.0,
                                                               stability_score_thresh=0.0))
    cfg_path = work / "bench-config.json"
    cfg_path.write_text(json.dumps(to_jsonable(cfg)))
    store = str(work / "store.zarr")
    t_first, first = timed(precompute, dataset="synthetic", root=str(work / "data"), store=store,
                           config=str(cfg_path), progress=False)
    t_cached, cached = timed(precompute, dataset="synthetic", root=str(work / "data"), store=store,
                             config=str(cfg_path), progress=False)
    assert cached["units_written"] == 0 and cached["models_loaded"] == 0
    n = first["n_images"]
    from stores import StageStore
    from tasks.plan import plan_stages
    plan = plan_stages(cfg)
    st = StageStore(store)
    tiles = [st.read_array(f"tiles/{plan.hashes['tiles']}/{u.path}", "boxes_xyxy").shape[0]
             for u in st.list_units("image", plan.hashes["image"], "synthetic")]

    def agg(variants, scheduler):
        runtime.forget_stores()
        return timed(run_variants, store, "synthetic", str(cfg_path), variants, None, scheduler, None, 8, True)[0]

    rows = {
        "one variant, serial": agg("seed", "synchronous"),
        "one variant, dask threads": agg("seed", "threads"),
        "one variant, dask processes": agg("seed", "processes"),
        "grid (36), serial": agg("grid", "synchronous"),
        "grid (36), dask threads": agg("grid", "threads"),
        "grid (36), dask processes": agg("grid", "processes"),
    }
    print(f"\nzsad aggregate benchmark: {n} images of {args.size} px, {sum(tiles) / n:.1f} tiles/image "
          f"(19 prompts x 352 x 352 float16 maps), {os.cpu_count()} CPU cores")
    print(f"precompute, tiny models, first run     : {t_first:8.2f} s  ({t_first / n * 1000:.0f} ms/image)")
    print(f"precompute, fully cached (orchestration): {t_cached:8.2f} s  ({t_cached / n * 1000:.0f} ms/image; "
          f"0 units written, 0 models loaded)")
    base = rows["one variant, serial"]
    for name, t in rows.items():
        per = t / (n * (36 if "grid" in name else 1))
        print(f"{name:<32}: {t:8.2f} s  ({per * 1000:6.1f} ms per image-variant, "
              f"{(rows['grid (36), serial'] if 'grid' in name else base) / t:4.2f}x vs serial)")


if __name__ == "__main__":
    main()

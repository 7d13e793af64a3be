"""Re-aggregation at VisA scale: the old path and the new path side by side, in one run.

A VisA-shaped store (image sizes 1024x768 to 1500x1000, 2-4 tiles of 352 px, 640-d CLIP
embeddings, 882 prompts, 19 CLIPSeg maps per tile of realistic smooth logits, half the images
with a small defect and its mask file) is generated once under ``--work`` and reused. Its
CLIPSeg outputs are stored twice: as float16 probabilities (the old cache) and as logit8.

* old path: one variant written with full-size float32-sized maps (as every variant was before),
  then a metrics pass that reads those maps back (the old ``evaluate``);
* new path: one pass that aggregates, writes the small per-variant units and streams each map
  into exact metrics (``run_variants(evaluate=True)``), from the logit8 cache.

Per-image times are extrapolated to VisA's 10,821 test images (the cost per image does not
depend on how many there are). A cProfile of the new path shows where the time goes.

    .venv/bin/python benchmarks/bench_visa_scale.py [--images 200] [--grid 36] [--work DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_store_size import L, S, blob, smooth  # noqa: E402

VISA_IMAGES = 10_821
SIZES = ((768, 1024), (1000, 1500), (1000, 1274))


def configs(work: Path) -> dict[str, str]:
    from zsad.config import PipelineConfig, to_jsonable
    out = {}
    for dt in ("float16", "logit8"):
        path = work / f"{dt}.json"
        path.write_text(json.dumps(to_jsonable(dataclasses.replace(PipelineConfig.tiny(), map_dtype=dt))))
        out[dt] = str(path)
    return out


def generate(work: Path, n: int, cfgs: dict[str, str]) -> None:
    from flows.configs import load_pipeline_config
    from stores import StageStore, Unit, class_key, unit_key
    from tasks.plan import plan_stages
    from zsad.pixelmaps import store_maps
    from zsad.prompts import build_prompt_set
    rng = np.random.default_rng(0)
    plans = {dt: plan_stages(load_pipeline_config(c)) for dt, c in cfgs.items()}
    h = plans["logit8"].hashes
    st = StageStore(work / "store.zarr")
    ps = build_prompt_set("capsules")
    st.write_unit(class_key("clip_text", h["clip_text"], "visa", "capsules"), {
        "emb_pd": (rng.normal(size=(len(ps), 640)).astype(np.float32), ("prompt", "embed")),
        "anomalous_p": (ps.anomalous_p, ("prompt",)), "seed_extension_p": (ps.seed_extension_p, ("prompt",))},
        {"texts": list(ps.texts), "logit_scale": 100.0})
    (work / "masks").mkdir(exist_ok=True)
    for i in range(n):
        unit, sha = Unit("visa", "capsules", "test", f"{i:05d}"), f"sha{i}"
        hh, ww = SIZES[i % len(SIZES)]
        t = int(rng.integers(2, 5))
        x0, y0 = rng.integers(0, ww - S, t), rng.integers(0, hh - S, t)
        boxes = np.stack([x0, y0, x0 + S, y0 + S], 1).astype(np.int32)
        logits = (-7.0 + 2.0 * smooth(rng, (t, L, S, S))).astype(np.float32)
        mask_path = None
        if i % 2:
            cy, cx, r = rng.uniform(60, S - 60), rng.uniform(60, S - 60), rng.uniform(8, 25)
            logits[0] += blob(S, S, cy, cx, r)[None] * rng.uniform(0.5, 3.0, (L, 1, 1)).astype(np.float32)
            mask = np.zeros((hh, ww), np.uint8)
            mask[y0[0]:y0[0] + S, x0[0]:x0[0] + S] = blob(S, S, cy, cx, r) * 255
            mask_path = str(work / "masks" / f"{i:05d}.png")
            Image.fromarray(mask).save(mask_path)
        st.write_unit(unit_key("image", h["image"], unit), {}, {"path": "", "sha256": sha, "height": hh, "width": ww,
                                                                 "label": i % 2, "mask_path": mask_path}, source=sha)
        st.write_unit(unit_key("tiles", h["tiles"], unit), {"boxes_xyxy": (boxes, ("tile", "corner")),
                      "component_t": (np.arange(1, t + 1, dtype=np.int32), ("tile",))}, source=sha)
        st.write_unit(unit_key("clip_image", h["clip_image"], unit),
                      {"emb_td": (rng.normal(size=(t, 640)).astype(np.float32), ("tile", "embed"))}, source=sha)
        for dt, plan in plans.items():
            st.write_unit(unit_key("clipseg", plan.hashes["clipseg"], unit),
                          {"maps_tlhw": (store_maps(logits, dt), ("tile", "prompt", "y", "x"))}, source=sha)


def old_path(store: str, cfg: str) -> None:
    """Write maps for one variant, then read them back for the metrics (what evaluate did)."""
    from flows.aggregate import run_variants
    from flows.configs import load_pipeline_config
    from stores import StageStore, unit_key
    from tasks.plan import plan_stages
    from zsad.config import AggregateConfig
    from zsad.datasets import ground_truth
    from zsad.evaluation import ClassEvaluator
    run_variants(store, "visa", cfg, "seed", overwrite=True, save_maps=True)
    plan = plan_stages(load_pipeline_config(cfg))
    vh, st, ev = plan.aggregate_hash(AggregateConfig()), StageStore(store), ClassEvaluator()
    for u in st.list_units("aggregate", vh, "visa"):
        image = st.read_attrs(unit_key("image", plan.hashes["image"], u))
        arrays, attrs = st.read_unit(unit_key("aggregate", vh, u))
        pixel = arrays["pixel_map_hw"].astype(np.float32)
        ev.update(image["label"], attrs["sample_score"], ground_truth(image["mask_path"], pixel.shape), pixel)
    ev.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--grid", type=int, default=36, choices=[6, 36])
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    from flows.aggregate import run_variants
    from stores import StageStore
    from tasks import runtime
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-visa-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    cfgs, store = configs(work), str(work / "store.zarr")
    marker = work / f"generated-{a.images}"
    if not marker.exists():
        t = time.perf_counter()
        generate(work, a.images, cfgs)
        marker.touch()
        print(f"generated {a.images} VisA-shaped images in {time.perf_counter() - t:.0f} s")
    st = StageStore(store)
    sizes = {stage: st.size_bytes(stage) / a.images for stage in ("tiles", "clip_image")}
    from flows.configs import load_pipeline_config
    from tasks.plan import plan_stages
    for dt in ("float16", "logit8"):
        sizes[f"clipseg ({dt})"] = st.size_bytes(f"clipseg/{plan_stages(load_pipeline_config(cfgs[dt])).hashes['clipseg']}"
                                                 ) / a.images

    def clock(fn, *args, **kw) -> float:
        runtime.forget_stores()
        t = time.perf_counter()
        fn(*args, **kw)
        return time.perf_counter() - t

    t_old = clock(old_path, store, cfgs["float16"])
    t_new = clock(run_variants, store, "visa", cfgs["logit8"], "seed", overwrite=True, evaluate=True)
    from zsad.config import AggregateConfig
    agg_old, agg_new = (st.size_bytes(f"aggregate/{plan_stages(load_pipeline_config(cfgs[dt])).aggregate_hash(AggregateConfig())}")
                        for dt in ("float16", "logit8"))
    grid = ("fusion=harmonic,arithmetic,geometric;top_fraction=0.25,0.5,1;scale_by_tile_score=true,false;"
            "seed_states=true,false") if a.grid == 36 else "fusion=harmonic,arithmetic,geometric;top_fraction=0.25,0.5"
    t_grid = clock(run_variants, store, "visa", cfgs["logit8"], grid, overwrite=True, evaluate=True)
    prof = cProfile.Profile()
    prof.enable()
    run_variants(store, "visa", cfgs["logit8"], "seed", overwrite=True, evaluate=True, scheduler="synchronous")
    prof.disable()

    n, scale = a.images, VISA_IMAGES / a.images
    print(f"\n{n} VisA-shaped images, 2 cores, Dask threads; VisA (10,821 images) extrapolated per image\n")
    print("| what | measured | per image | VisA, extrapolated |\n|---|---:|---:|---:|")
    for label, t, count in (("old path: one variant, maps written, metrics read back", t_old, 1),
                            ("new path: one variant, metrics in the pass", t_new, 1),
                            (f"new path: grid of {a.grid}, metrics in the pass", t_grid, a.grid)):
        print(f"| {label} | {t:.1f} s | {t / n * 1000 / count:.0f} ms{' per variant' if count > 1 else ''} | "
              f"{t * scale / 60:.1f} min |")
    print(f"\nnew / old, one variant: {t_old / t_new:.2f}x faster\n")
    print("| store bytes per image | MB |\n|---|---:|")
    for k, v in sizes.items():
        print(f"| {k} | {v / 1e6:.2f} |")
    print(f"| aggregate, one variant, old (maps) | {agg_old / n / 1e6:.3f} |\n| aggregate, one variant, new | "
          f"{agg_new / n / 1e6:.4f} |")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(10)
    print("\nwhere the new path's time goes (cProfile, serial, top 10 by own time):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-1800:])


if __name__ == "__main__":
    main()

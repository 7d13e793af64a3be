"""Re-aggregation at VisA scale: the previous code and this one side by side, in one run.

A VisA-shaped store (image sizes 1024x768 to 1500x1000, 2-4 tiles of 352 px, 640-d CLIP
embeddings, 882 prompts, 19 CLIPSeg maps per tile of realistic smooth logits cached as logit8,
half the images with a small defect and its mask file) is generated once under ``--work`` and
grown to each size asked for.

* old: the code at ``--old-rev`` (checked out with ``git archive``), run in its own process on
  the same store: ``run_variants(evaluate=True, overwrite=True)`` for the seed variant and the
  grid (the grid on the first ``--old-grid-images`` images: it takes 25 ms per image-variant);
* new: this checkout, the same calls, after a one-time build of the ``fused`` stage (its own line).

Each measurement runs in a fresh process; CPU utilisation = (user + system time of the process
and its workers) / (wall time x cores). Per-image times are extrapolated to VisA's 10,821 test
images, and the metrics of old and new are compared (largest difference over every class and
metric). The second size shows whether the cost per image grows with the store.

    .venv/bin/python benchmarks/bench_visa_scale.py [--sizes 500,2000] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from bench_store_size import L, S, blob, smooth  # noqa: E402

VISA_IMAGES = 10_821
SIZES = ((768, 1024), (1000, 1500), (1000, 1274))
GRID = "grid"  # the CLI's 72-variant grid


def configs(work: Path) -> dict[str, str]:
    from zsad.config import PipelineConfig, to_jsonable
    path = work / "fused-float32.json"
    path.write_text(json.dumps(to_jsonable(dataclasses.replace(PipelineConfig.tiny(), fused_dtype="float32"))))
    return {"float16": "tiny", "float32": str(path)}  # the old code reads "tiny" (fused float16 is its default)


def generate(work: Path, start: int, n: int, cfg: str) -> None:
    """Images ``start`` .. ``n - 1`` of the store (each image's arrays depend only on its index)."""
    from zsad.flows.configs import load_pipeline_config
    from zsad.stores import StageStore, Unit, class_key, unit_key
    from zsad.tasks.plan import plan_stages
    from zsad.pixelmaps import store_maps
    from zsad.prompts import build_prompt_set
    h = plan_stages(load_pipeline_config(cfg)).hashes
    st = StageStore(work / "store.zarr")
    if start == 0:
        rng = np.random.default_rng(0)
        ps = build_prompt_set("capsules")
        st.write_unit(class_key("clip_text", h["clip_text"], "visa", "capsules"), {
            "emb_pd": (rng.normal(size=(len(ps), 640)).astype(np.float32), ("prompt", "embed")),
            "anomalous_p": (ps.anomalous_p, ("prompt",)), "seed_extension_p": (ps.seed_extension_p, ("prompt",))},
            {"texts": list(ps.texts), "logit_scale": 100.0})
    (work / "masks").mkdir(exist_ok=True)
    for i in range(start, n):
        rng = np.random.default_rng(1000 + i)
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
        st.write_unit(unit_key("clipseg", h["clipseg"], unit),
                      {"maps_tlhw": (store_maps(logits, "logit8"), ("tile", "prompt", "y", "x"))}, source=sha)


def _metrics(meta: dict) -> dict[str, dict[str, float]]:
    """variant label -> {metric: value} over every class (for comparing old and new)."""
    out = {}
    for m in meta.values():
        m = m if isinstance(m, dict) else vars(m)  # the old code returned dicts, this one VariantOutcome
        for cls, ev in m.get("evaluators", {}).items():
            for k, v in ev.result().items():
                out.setdefault(m["label"], {})[f"{cls}/{k}"] = float(v)
    return out


def one(kind: str, work: Path, n: int, cfg: str) -> dict:
    """One measurement in this process (``--one``): wall, CPU seconds (with workers), metrics."""
    from zsad.flows.aggregate import run_variants
    from zsad.flows.command_requests import AggregateRequest
    from zsad.stores import Unit
    units = [f"visa/capsules/test/{i:05d}" for i in range(n)]
    store = str(work / "store.zarr")
    r0, c0, t = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN), \
        time.perf_counter()
    out: dict = {}
    if kind == "fused":
        from zsad.flows.configs import load_pipeline_config
        from zsad.stores import StageStore, Unit
        from zsad.tasks.fused import build_fused
        from zsad.tasks.plan import plan_stages
        plan = plan_stages(load_pipeline_config(cfg))
        for f in ("harmonic", "arithmetic", "geometric"):  # a cold build each time
            StageStore(store).delete(f"fused/{plan.fused_hash(f)}")
        r0, c0, t = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN), \
            time.perf_counter()
        out["written"] = build_fused(StageStore(store), plan, [Unit.parse(u) for u in units],
                                     ("harmonic", "arithmetic", "geometric"))
        out["bytes"] = {f: StageStore(store).size_bytes(f"fused/{plan.fused_hash(f)}") / n
                        for f in ("harmonic",)}
    else:
        meta = run_variants(
            AggregateRequest(
                store=store,
                dataset="visa",
                config=cfg,
                variants="seed" if kind == "seed" else GRID,
                units=tuple(map(Unit.parse, units)),
                overwrite=True,
                evaluate=True,
            )
        )
        out["metrics"] = _metrics(meta)
        out["variants"] = len(meta)
        out["scheduler"] = getattr(next(iter(meta.values())), "scheduler", "threads")
    wall = time.perf_counter() - t
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(b, f) - getattr(a, f) for a, b in ((r0, r1), (c0, c1)) for f in ("ru_utime", "ru_stime"))
    return {**out, "wall": wall, "cpu": cpu}


def measure(kind: str, work: Path, n: int, cfg: str, src: Path | None = None) -> dict:
    """``one`` in a fresh process; ``src``: run the code checked out there instead of this one."""
    from oldrev import environment
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = sys.executable if src is None else str(environment(src))  # the old tree's own zsad.flows, not ours
    args = [python, str(HERE if src is None else src / "benchmarks" / "bench_visa_scale_old.py"),
            "--one", kind, "--n", str(n), "--work", str(work), "--config", cfg]
    res = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(src or HERE.parents[1]))
    if res.returncode != 0:
        raise SystemExit(f"{kind} ({'old' if src else 'new'}) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def old_checkout(work: Path, rev: str) -> Path:
    """The code at ``rev`` (``git archive``) with this file's ``one`` as its runner."""
    from oldrev import checkout
    return checkout(work, rev, HERE, "bench_visa_scale_old.py")


def _largest_diff(a: dict, b: dict) -> float:
    diffs = [abs(a[v][k] - b[v][k]) for v in a if v in b for k in a[v] if k in b[v]
             if not (np.isnan(a[v][k]) and np.isnan(b[v][k]))]
    return max(diffs) if diffs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000", help="store sizes (images), smallest first")
    ap.add_argument("--old-rev", default="a1ea2a7", help="the code to compare with (a git revision with "
                    "zsad.flows.command_requests.AggregateRequest: a1ea2a7 is before the detector interface)")
    ap.add_argument("--old-grid-images", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="16 and 24 images, the old grid on 4: seconds")
    ap.add_argument("--work", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--config", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.old_grid_images = "16,24", 4
    work = Path(a.work or tempfile.mkdtemp(prefix="zsad-visa-scale-"))
    if a.one:
        print(json.dumps(one(a.one, work, a.n, a.config)))
        return
    sys.path.insert(0, str(HERE.parents[1]))
    work.mkdir(parents=True, exist_ok=True)
    cfgs, sizes = configs(work), [int(v) for v in a.sizes.split(",")]
    have = int((work / "generated").read_text()) if (work / "generated").exists() else 0
    if have < sizes[-1]:
        t = time.perf_counter()
        generate(work, have, sizes[-1], cfgs["float16"])
        (work / "generated").write_text(str(sizes[-1]))
        print(f"generated images {have}..{sizes[-1] - 1} in {time.perf_counter() - t:.0f} s")
    old = old_checkout(work, a.old_rev)
    cores = os.cpu_count() or 1
    rows, diffs = [], []

    def row(label: str, r: dict, n: int, per: int = 1) -> None:
        rows.append((label, n, r["wall"], r["wall"] / n / per * 1000, r["wall"] / n * VISA_IMAGES / 60,
                     r["cpu"] / (r["wall"] * cores)))

    for n in sizes:
        fused16 = measure("fused", work, n, cfgs["float16"])
        row(f"new: fused stage built once (3 fusions, float16; {fused16['bytes']['harmonic'] / 1e6:.2f} MB per "
            f"image per fusion)", fused16, n)
        old_seed, new_seed = measure("seed", work, n, cfgs["float16"], old), measure("seed", work, n, cfgs["float16"])
        row("old: seed variant, exact metrics", old_seed, n)
        row(f"new: seed variant, exact metrics ({new_seed['scheduler']})", new_seed, n)
        m = min(n, a.old_grid_images)
        old_grid = measure("grid", work, m, cfgs["float16"], old)
        row(f"old: grid of 72, metrics (first {m} images)", old_grid, m, 72)
        new_grid = measure("grid", work, n, cfgs["float16"])
        row(f"new: grid of 72, metrics ({new_grid['scheduler']})", new_grid, n, 72)
        small = measure("grid", work, m, cfgs["float16"])
        diffs.append((n, _largest_diff(old_seed["metrics"], new_seed["metrics"]),
                      _largest_diff(old_grid["metrics"], small["metrics"])))
    n = sizes[0]
    fused32 = measure("fused", work, n, cfgs["float32"])
    new32, new16 = measure("seed", work, n, cfgs["float32"]), measure("seed", work, n, cfgs["float16"])
    old_seed = measure("seed", work, n, cfgs["float16"], old)
    print(f"\n{cores} cores; VisA = {VISA_IMAGES:,} images, extrapolated per image\n")
    print(
        "| what | images | measured | per image | VisA, extrapolated | CPU utilisation |\n|---|---:|---:|---:|---:|---:|"
    )
    for label, k, wall, per, visa, util in rows:
        unit = " per variant" if "grid" in label else ""
        print(f"| {label} | {k} | {wall:.1f} s | {per:.2f} ms{unit} | {visa:.1f} min | {util:.0%} |")
    print("\n| store size | old vs new metrics, seed: largest difference | grid (first images) |\n|---:|---:|---:|")
    for k, d_seed, d_grid in diffs:
        print(f"| {k} | {d_seed:.2e} | {d_grid:.2e} |")
    if len(sizes) > 1:  # cost = fixed + n * marginal, from the two largest sizes
        print("\n| what | fixed per run | marginal per image | VisA: fixed + 10,821 x marginal |\n|---|---:|---:|---:|")
        for label in sorted({r[0] for r in rows if "first" not in r[0]}, key=[r[0] for r in rows].index):
            pts = [(k, wall) for lab, k, wall, *_ in rows if lab == label][-2:]
            if len(pts) == 2 and pts[1][0] > pts[0][0]:
                marginal = (pts[1][1] - pts[0][1]) / (pts[1][0] - pts[0][0])
                fixed = pts[0][1] - pts[0][0] * marginal
                print(f"| {label} | {fixed:.1f} s | {marginal * 1000:.2f} ms | "
                      f"{(fixed + VISA_IMAGES * marginal) / 60:.1f} min |")
    print(f"\nfused cache as float32 instead of float16 ({n} images): {fused32['bytes']['harmonic'] / 1e6:.2f} MB "
          f"per image per fusion; seed metrics, largest difference: old vs new float32 "
          f"{_largest_diff(old_seed['metrics'], new32['metrics']):.2e} (the exact sigmoid alone), new float16 vs "
          f"float32 {_largest_diff(new16['metrics'], new32['metrics']):.2e} (the cache's rounding alone)")


if __name__ == "__main__":
    main()

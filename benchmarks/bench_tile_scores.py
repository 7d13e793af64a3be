"""Benchmark: tile scores, old (BLAS ``emb @ text.T``, then means) against new (``math.fsum``
contrast, no BLAS), in one run, at the paper's shapes (882 prompts, 640-d ViT-B-16-plus-240
embeddings, 1-8 tiles per image) and the tiny model's (32-d, ~100 tiles).

Prints per image the time of each, the per-class set-up (old: normalise the prompts; new: their
contrast), the projected cost for a VisA sweep (2,162 test images x 2 prompt sets), and how many
tile scores change their last bits between 1 and 2 BLAS threads (the CI failure of issue 25).

    .venv/bin/python benchmarks/bench_tile_scores.py [--old ffeebe6] [--repeat 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.oldrev import checkout  # noqa: E402
from zsad.scoring import contrast_scores, prompt_contrast, unit_rows  # noqa: E402


def old_scoring(rev: str, work: Path):
    src = checkout(work, rev, Path(__file__), "bench_tile_scores.py")
    spec = importlib.util.spec_from_file_location("old_scoring", src / "zsad" / "scoring.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="ffeebe6", help="the revision to compare with (git archive)")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="5 repeats: seconds")
    args = ap.parse_args()
    if args.quick:
        args.repeat = 5
    old = old_scoring(args.old, Path(tempfile.mkdtemp(prefix="zsad-bench-ts-")))
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    print(f"cores: {os.cpu_count()}; BLAS: {blas}")
    cpu0, wall0 = os.times(), time.perf_counter()
    rng = np.random.default_rng(0)
    print("| shape | old ms/image | new ms/image | new/old | old set-up ms/class | new set-up ms/class "
          "| VisA sweep, 2 prompt sets: old s | new s | 1 vs 2 BLAS threads, tiles changed: old | new |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tiles, dim in ((1, 640), (2, 640), (4, 640), (8, 640), (106, 32)):
        emb = rng.standard_normal((tiles, dim)).astype(np.float32)
        text = rng.standard_normal((882, dim)).astype(np.float32)
        anomalous = rng.random(882) < 0.5
        text_unit = old.l2_normalize(text)
        contrast = prompt_contrast(unit_rows(text), anomalous)

        def old_scores():
            return old.unit_tile_scores(old.l2_normalize(emb), text_unit, anomalous, 100.0)

        def new_scores():
            return contrast_scores(unit_rows(emb), contrast, 100.0)

        t_old, t_new = per_call(old_scores, args.repeat), per_call(new_scores, args.repeat)
        s_old = per_call(lambda: old.l2_normalize(text), 20)
        s_new = per_call(lambda: prompt_contrast(unit_rows(text), anomalous), 20)
        changed = {}
        for name, fn in (("old", old_scores), ("new", new_scores)):
            runs = []
            for threads in (1, 2):
                with threadpool_limits(threads):
                    runs.append(fn())
            changed[name] = int((runs[0] != runs[1]).sum())
        visa = 2162 * 2
        print(f"| {tiles} tiles x {dim}-d | {t_old * 1e3:.3f} | {t_new * 1e3:.3f} | {t_new / t_old:.2f} | "
              f"{s_old * 1e3:.1f} | {s_new * 1e3:.1f} | {visa * t_old:.2f} | {visa * t_new:.2f} | "
              f"{changed['old']} of {tiles} | {changed['new']} of {tiles} |")
    cpu1, wall = os.times(), time.perf_counter() - wall0
    used = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall
    print(f"wall {wall:.1f} s, CPU utilisation {100 * used:.0f} % of one core ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

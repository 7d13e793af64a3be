"""Stock and zsad's SAM generator alternately in one process, one model, realistic survivors:
the default engine's saving without the between-process noise of ``bench_sam.py``.

The mask decoder is the same in ViT-B, -L and -H (256 channels), so ``--sam vit_b`` times the
decoder and post-processing of ViT-H with a cheaper encoder (its random decoder keeps another
number of masks: printed).

    .venv/bin/python benchmarks/bench_sam_inprocess.py [--sam vit_b] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sam", default="vit_b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-size", default="1024x768")
    ap.add_argument("--quick", action="store_true", help="the tiny SAM, 256x192, one round: seconds")
    a = ap.parse_args()
    if a.quick:
        a.sam, a.image_size, a.rounds = "tiny", "256x192", 1
    import numpy as np
    import torch
    from bench_sam import _timer
    from zsad.config import ModelSpec, SamGeneratorConfig
    from zsad.models import build_sam
    from zsad.models.sam_survivors import install_survivors
    seg = build_sam(ModelSpec("sam", a.sam), generator=SamGeneratorConfig())
    stats, totals = install_survivors(seg), {"decoder": 0.0}
    _timer(seg.sam.mask_decoder, totals, "decoder", "cpu")
    w, h = (int(v) for v in a.image_size.split("x"))
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    print(f"\nSAM {a.sam}, realistic survivors, {a.image_size}, one process; CPU, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| round | generator | masks | decoder s | the rest s | SAM s/image | CPU use |\n|---|---|---|---|---|---|---|")
    best = {}
    for r in range(a.rounds):
        for name, fn in (("stock", seg.generate_stock), ("zsad", seg.generate)):
            totals["decoder"], stats["seconds"] = 0.0, 0.0
            cpu, start = time.process_time(), time.perf_counter()
            out = fn(img)
            wall = time.perf_counter() - start
            use = 100 * (time.process_time() - cpu) / wall
            total, dec = wall - stats["seconds"], totals["decoder"] - stats["seconds"]
            best[name] = min(best.get(name, total), total)
            print(f"| {r + 1} | {name} | {len(out.scores_n)} | {dec:.1f} | {total - dec:.1f} | {total:.1f} | {use:.0f} % |",
                  flush=True)
    print(f"\nbest of {a.rounds}: stock {best['stock']:.1f} s, zsad {best['zsad']:.1f} s "
          f"({best['stock'] / best['zsad']:.2f}x)")


if __name__ == "__main__":
    main()

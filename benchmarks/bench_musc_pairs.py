"""MuSc's mutual step, every ordered pair against each unordered pair once, in one run.

MuSc's official MSM (and ``zsad.musc.nearest_distances(z, z)``) forms the distance matrix of every
ordered pair of images (i, j); ``zsad.musc.pair_distances`` forms one matrix per unordered pair
of image blocks and reads both directions from it (row minima: i's patches to j, column minima:
j's to i). Random unit features of MuSc's shapes (the cost does not depend on their values):
ViT-L-14-336 at 518 px (37 x 37 patches, width 1024) per layer and r. Prints core count, CPU
use, both times, their ratio, the largest difference of the two tables off the diagonal (an
image against itself is never used), and the image-pair products each forms.

    .venv/bin/python benchmarks/bench_musc_pairs.py [--images 20 40] [--patches 1369] [--width 1024] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn):
    c0, t0 = os.times(), time.perf_counter()
    out = fn()
    c1, wall = os.times(), time.perf_counter() - t0
    return out, wall, (c1.user - c0.user + c1.system - c0.system) / wall


def products(n: int, p: int) -> tuple[int, int]:
    """Image-pair products: every ordered pair (old) and the block pairs of ``pair_distances`` (new)."""
    from zsad.musc import pair_block
    block = pair_block(n, p)
    sizes = [min(block, n - s) for s in range(0, n, block)]
    new = sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(i, len(sizes)))
    return n * n, new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--patches", type=int, default=1369)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="8 images of 15 x 15 patches, width 64: seconds")
    a = ap.parse_args()
    if a.quick:
        a.images, a.patches, a.width = [8], 225, 64
    import torch
    from zsad.musc import nearest_distances, pair_distances
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}; {a.patches} patches of width "
          f"{a.width} per image, one layer and r\n")
    print("| images | old: every ordered pair (s) | new: each unordered pair once (s) | old / new | CPU use old, new "
          "| image-pair products old, new | largest difference off the diagonal |\n|---:|---:|---:|---:|---|---|---|")
    for n in a.images:
        z = torch.nn.functional.normalize(torch.randn(n, a.patches, a.width, generator=torch.Generator().manual_seed(n)),
                                          dim=-1)
        old, t_old, u_old = timed(lambda: nearest_distances(z, z))
        new, t_new, u_new = timed(lambda: pair_distances(z))
        po, pn = products(n, a.patches)
        print(f"| {n} | {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.2f}x | {u_old:.0%}, {u_new:.0%} | {po}, {pn} "
              f"({po / pn:.2f}x fewer) | {(old - new).abs()[~torch.eye(n, dtype=torch.bool)].max().item():.1e} |",
              flush=True)
    for n in (100, 200):
        po, pn = products(n, a.patches)
        print(f"| {n} (counted, not timed) | | | | | {po}, {pn} ({po / pn:.2f}x fewer) | |")


if __name__ == "__main__":
    main()

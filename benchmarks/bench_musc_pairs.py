"""MuSc's mutual step, every ordered pair against each unordered pair once, in one run.

MuSc's official MSM (and ``zsad.musc.nearest_distances(z, z)``) forms the distance matrix of every
ordered pair of images (i, j); ``zsad.musc.pair_distances`` forms one matrix per unordered pair
of image blocks and reads both directions from it (row minima: i's patches to j, column minima:
j's to i). Random unit features of MuSc's shapes (the cost does not depend on their values),
per layer and r: ViT-L-14-336 at 518 px (37 x 37 patches, width 1024) and ViT-B-16-plus-240 at
240 px (15 x 15, width 896). Prints core count, CPU use, both times, their ratio, the largest
difference of the two tables off the diagonal (an image against itself is never used), and the
image-pair products each forms. Batches too large to time here (``--measure-upto``) are fitted:
each side's seconds per image-pair product at the largest timed batch times its product count.

    .venv/bin/python benchmarks/bench_musc_pairs.py [--images 20 50 200] [--archs L,B] [--measure-upto 50]
        [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds  # noqa: E402


def run_once(fn):
    """(``fn()``'s output, wall seconds, CPU use in cores) of one call."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    return out, wall, (cpu_seconds() - c0) / wall


def best_of(repeats: int, old_fn, new_fn):
    """Old and new interleaved ``repeats`` times: each side's (output, best wall seconds, CPU use of that run)."""
    old = new = (None, float("inf"), 0.0)
    for _ in range(repeats):
        old = min(old, run_once(old_fn), key=lambda r: r[1])
        new = min(new, run_once(new_fn), key=lambda r: r[1])
    return old, new


def products(n: int, p: int) -> tuple[int, int]:
    """Image-pair products: every ordered pair (old) and the block pairs of ``pair_distances`` (new)."""
    from zsad.musc import pair_block
    block = pair_block(n, p)
    sizes = [min(block, n - s) for s in range(0, n, block)]
    new = sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(i, len(sizes)))
    return n * n, new


ARCHS = {"L": ("ViT-L-14-336/518", 1369, 1024), "B": ("ViT-B-16-plus-240/240", 225, 896), "tiny": ("tiny", 225, 64)}


def arch_rows(name: str, patches: int, width: int, images: list[int], measure_upto: int, repeats: int) -> None:
    import torch
    from zsad.musc import nearest_distances, pair_distances
    per_product = None  # (old, new) seconds per image-pair product at the largest timed batch
    warm = torch.nn.functional.normalize(torch.randn(4, patches, width), dim=-1)
    nearest_distances(warm, warm), pair_distances(warm)  # first calls (thread pools, allocator) untimed
    for n in sorted(images):
        po, pn = products(n, patches)
        if n <= measure_upto:
            z = torch.nn.functional.normalize(torch.randn(n, patches, width, generator=torch.Generator().manual_seed(n)),
                                              dim=-1)
            (old, t_old, u_old), (new, t_new, u_new) = best_of(repeats, lambda: nearest_distances(z, z),
                                                               lambda: pair_distances(z))
            per_product = (t_old / po, t_new / pn)
            diff = (old - new).abs()[~torch.eye(n, dtype=torch.bool)].max().item()
            how, use, off = "measured", f"{u_old:.0%}, {u_new:.0%}", f"{diff:.1e}"
        elif per_product is not None:
            t_old, t_new = per_product[0] * po, per_product[1] * pn
            how, use, off = "fit", "", ""
        else:
            print(f"| {name} | {n} | not timed (no smaller batch timed) | | | | {po}, {pn} | |")
            continue
        print(f"| {name} | {n} ({how}) | {t_old:.2f} ({t_old / n:.3f}) | {t_new:.2f} ({t_new / n:.3f}) | "
              f"{t_old / t_new:.2f}x | {use} | {po}, {pn} ({po / pn:.2f}x fewer) | {off} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[20, 50, 200])
    ap.add_argument("--archs", default="L,B", help=f"comma-separated of {', '.join(ARCHS)}")
    ap.add_argument("--measure-upto", type=int, default=20, help="time batches up to this size, fit larger ones")
    ap.add_argument("--repeats", type=int, default=3, help="old and new interleaved this often; the best of each")
    ap.add_argument("--quick", action="store_true", help="8 images of 15 x 15 patches, width 64: seconds")
    a = ap.parse_args()
    if a.quick:
        a.images, a.archs, a.measure_upto, a.repeats = [8], "tiny", 8, 1
    import torch
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}; one layer and r; seconds for the "
          f"batch (per image), best of {a.repeats} interleaved runs\n")
    print("| backbone | images | old: every ordered pair (s) | new: each unordered pair once (s) | old / new "
          "| CPU use old, new | image-pair products old, new | largest difference off the diagonal |\n"
          "|---|---:|---:|---:|---:|---|---|---|")
    for key in a.archs.split(","):
        arch_rows(*ARCHS[key], a.images, a.measure_upto, a.repeats)


if __name__ == "__main__":
    main()

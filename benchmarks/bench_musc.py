"""MuSc on this machine: the token stage and the mutual scoring per image, at the published sizes.

Published architectures with random weights (compute does not depend on the weights' values):
ViT-L-14-336 at 518 px (37 x 37 patches, width 1024, blocks 5/11/17/23) and ViT-B-16-plus-240
at 240 px (15 x 15, width 896, blocks 2/5/8/11); random float16 tokens of those shapes for the
scoring (its cost does not depend on their values either).

1. Token stage: ``ClipEncoder.encode_whole`` per image (best of a few), and the bytes a
   ``musc_tokens`` unit and a ``musc`` unit (one r, a batch of N) take in a store.
2. Mutual scoring per image at N = 50, 100, 200 images per class. Its cost is
   ``fixed + per_pair x (N - 1)`` per image (LNAMD once per image, then one distance block per
   other image, layer and r): both terms are timed (a few blocks), the per-image and per-class
   totals extrapolated (marked ``~``), and, where a whole class is cheap enough here, measured
   through ``zsad.musc.mutual_maps`` (marked ``measured``) to check the fit.
3. Beside: MuSc's own per-image times (RTX 3090, its README) and zsad's tile-based ``mutual``
   mode (the MuSc-like mode before this one) on the seed's tiles, in the same run.

    .venv/bin/python benchmarks/bench_musc.py [--device cpu|cuda] [--classes 50 100 200] [--quick | --memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_rows, stored_mb, timed  # noqa: E402

ARCHS = {  # name -> (open_clip arch, pretrained tag, image size, layers, MuSc's ms per image on an RTX 3090)
    "ViT-L-14-336/518": ("ViT-L-14-336", "openai", 518, (5, 11, 17, 23), 955.3),
    "ViT-B-16-plus-240/240": ("ViT-B-16-plus-240", "laion400m_e32", 240, (2, 5, 8, 11), 85.25),
    "tiny/96": ("tiny", "random", 96, (0, 1), None),  # the GPU check's dry run: code paths, not costs
}
R_LIST = (1, 3, 5)


def token_rows(name: str, device: str, repeats: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    from zsad.config import ModelSpec
    from zsad.models.clip import build_clip
    arch, tag, size, layers, _ = ARCHS[name]
    enc = build_clip(ModelSpec("clip", arch, "random"), device=device, batch_size=1, image_size=size)
    image = np.random.default_rng(0).integers(0, 255, (1000, 1500, 3), dtype=np.uint8)  # a VisA-size image
    secs, util = timed(lambda: enc.encode_whole([image], layers), repeats)
    tokens, cls = enc.encode_whole([image], layers)
    mb = stored_mb("musc_tokens/0123456789abcdef/d/c/test/x", {"tokens_ltc": tokens[0], "class_d": cls[0]})
    return [(f"{name}: token stage (s per image; CPU use {util:.1f} cores)", f"{secs:.2f}"),
            (f"{name}: musc_tokens unit (MB stored; raw {tokens.nbytes / 1e6:.1f})", f"{mb:.1f}")], tokens[0]


def pair_seconds(tokens_ltc: np.ndarray, device: str, n_queries: int = 2, n_keys: int = 32
                 ) -> tuple[float, float, float]:
    """(LNAMD seconds per image and layer, distance seconds per (query, key image, layer), CPU use),
    averaged over r in R_LIST, from ``n_queries`` images against ``n_keys`` (the block shapes
    ``zsad.musc.nearest_distances`` uses at these sizes)."""
    import torch

    from zsad.musc import lnamd, nearest_distances
    noise = torch.randn(n_queries + n_keys, 1, *tokens_ltc.shape[1:]) * 0.1
    batch = (torch.from_numpy(tokens_ltc[None, :1]).float() + noise).half()  # one layer
    ln, pair, utils = 0.0, 0.0, []
    for r in R_LIST:
        t, _ = timed(lambda: lnamd(batch, r, device=device), 1)
        ln += t / batch.shape[0]
        z = lnamd(batch, r, device=device)[:, 0]
        t, u = timed(lambda: nearest_distances(z[:n_queries], z[n_queries:]), 1)
        pair += t / (n_queries * n_keys)
        utils.append(u)
    return ln / len(R_LIST), pair / len(R_LIST), float(np.mean(utils))


def scoring_rows(name: str, tokens_ltc: np.ndarray, device: str, classes: list[int], measure_upto: int
                 ) -> list[tuple[str, str]]:
    from zsad.musc import mutual_maps
    _, _, _, layers, musc_ms = ARCHS[name]
    ln, pair, util = pair_seconds(tokens_ltc, device)
    lay, nr = len(layers), len(R_LIST)
    fixed = ln * lay * nr  # LNAMD of the image at each layer and r
    per_pair = pair * lay * nr  # one other image, every layer and r
    rows = [(f"{name}: fit per image (s) = fixed + per other image x (N - 1)",
             f"{fixed:.3f} + {per_pair:.4f} x (N - 1)  (distance blocks: CPU use {util:.1f} cores)")]
    for n in classes:
        per_image = fixed + per_pair * (n - 1)
        if n <= measure_upto:
            rng = np.random.default_rng(1)
            batch = (tokens_ltc[None] + rng.normal(0, 0.1, (n, *tokens_ltc.shape))).astype(np.float16)
            t0 = time.perf_counter()
            mutual_maps(batch, r_list=R_LIST, device=device)
            measured = (time.perf_counter() - t0) / n
            how = f"measured {measured:.2f} (fit ~{per_image:.2f})"
        else:
            how = f"~{per_image:.2f}"
        whole = per_image * n
        rows.append((f"{name}: mutual scoring, class of {n} (s per image; whole class)",
                     f"{how}; ~{whole / 3600:.2f} h" if whole > 3600 else f"{how}; ~{whole / 60:.1f} min"))
    if musc_ms is not None:
        rows.append((f"{name}: MuSc's own, class of 200, RTX 3090 (ms per image, its README)", f"{musc_ms}"))
    n = max(classes)
    rows.append((f"{name}: musc unit, one r, batch of {n} (MB raw float32)",
                 f"{lay * n * tokens_ltc.shape[1] * 4 / 1e6:.1f} (x 3 for r = 1, 3, 5)"))
    return rows


def cpu_row(name: str, tokens_ltc: np.ndarray, device: str, n: int) -> tuple[str, str]:
    """MuSc's maps of ``n`` images on ``device`` against the CPU's: the largest absolute difference."""
    from zsad.musc import mutual_maps
    rng = np.random.default_rng(3)
    batch = (tokens_ltc[None] + rng.normal(0, 0.1, (n, *tokens_ltc.shape))).astype(np.float16)
    here, cpu = mutual_maps(batch, r_list=R_LIST, device=device), mutual_maps(batch, r_list=R_LIST, device="cpu")
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in zip(here, cpu))
    return f"{name}: maps of {n} images, {device} against cpu (largest absolute difference)", f"{diff:.2e}"


def old_mutual_row(n: int) -> tuple[str, str]:
    """zsad's tile-based mutual mode (before MuSc's): one 15 x 15 tile per image, neighbourhood 3."""
    from zsad.patches import mutual_scores
    rng = np.random.default_rng(2)
    feats = {str(i): rng.normal(size=(1, 4, 15, 15, 896)).astype(np.float16) for i in range(n)}
    t0 = time.perf_counter()
    mutual_scores({"0": feats["0"]}, [list(feats.items())], 0.3, 3)
    return (f"zsad tile mode `mutual` (before), ViT-B-16-plus-240 tiles, class of {n}, r <= 3 (s per image)",
            f"{time.perf_counter() - t0:.2f}")


def memory_rows(n: int, device: str) -> list[tuple[str, str]]:
    """Peak memory of one ``musc`` block task at VisA's size: a class of ``n`` ViT-L/518 images'
    tokens held (float16), one layer's LNAMD features of all of them, one query's distances."""
    import torch

    from zsad.musc import layer_features, nearest_distances
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    tokens = torch.randn(n, 4, 1370, 1024, dtype=torch.float16)
    held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t0 = time.perf_counter()
    z = layer_features(tokens, 0, 3, device=device)
    nearest_distances(z[:1], z)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return [(f"ViT-L-14-336/518, class of {n}: tokens held (GB; peak RSS before / with them)",
             f"{tokens.numel() * 2 / 1e9:.2f} ({before:.1f} / {held:.1f})"),
            (f"ViT-L-14-336/518, class of {n}: peak RSS of a block (one layer's LNAMD of all, one query) (GB)",
             f"{peak:.1f} ({time.perf_counter() - t0:.0f} s)")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--classes", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--quick", action="store_true", help="ViT-B-16-plus-240 only, one repeat")
    ap.add_argument("--memory", action="store_true", help="only the peak memory of a block at VisA's size")
    ap.add_argument("--archs", default=None, help=f"comma-separated, of {', '.join(ARCHS)} (default: the published)")
    ap.add_argument("--compare-cpu", type=int, default=0, metavar="N",
                    help="also the maps of a batch of N images on --device against the CPU's (largest difference)")
    args = ap.parse_args()
    import torch
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, device: {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    rows = memory_rows(max(args.classes), args.device) if args.memory else []
    published = [n for n, spec in ARCHS.items() if spec[4] is not None]
    names = [] if args.memory else args.archs.split(",") if args.archs else ["ViT-B-16-plus-240/240"] if args.quick \
        else published
    for name in names:
        trows, tokens = token_rows(name, args.device, 1 if args.quick else 2)
        rows += trows
        measure_upto = 50 if name.startswith("ViT-B") or args.device.startswith("cuda") else 0
        rows += scoring_rows(name, tokens, args.device, args.classes, measure_upto)
        if args.compare_cpu:
            rows.append(cpu_row(name, tokens, args.device, args.compare_cpu))
    if not args.memory:
        rows.append(old_mutual_row(50))
    print_rows(rows)


if __name__ == "__main__":
    main()

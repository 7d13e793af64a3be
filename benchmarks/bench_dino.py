"""The DINO family on this machine: token stages per image, AnomalyDINO's scoring per image, and the
store's megabytes per image of each new token stage.

Published architectures with random weights (compute does not depend on the weights' values):
MuSc's DINOv2 ViT-L/14 at 518 px (37 x 37 patches, blocks 5/11/17/23: ``DinoEncoder.encode_whole``)
and AnomalyDINO's ViT-S/14 at smaller edge 448 (a 1024 x 1024 MVTec image: 32 x 32 patches, the
last block: ``encode_patches``). AnomalyDINO per test image (``zsad.tasks.dino_scores``' work:
the foreground mask, the nearest reference patches, the top 1 %, the full-size map) at 1 and 16
shots, with and without the 8 reference rotations (memory of k x 8 x 1024 or k x 1024 patches).

    .venv/bin/python benchmarks/bench_dino.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_rows, stored_mb, timed  # noqa: E402

KEY = "{}/0123456789abcdef/d/c/test/x"


def token_rows(quick: bool, repeats: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    from zsad.config import ModelSpec
    from zsad.models import build_dino
    from zsad.stores.schema import CLASS_TOKEN, DINO_TOKENS, TOKENS
    musc_arch, musc_size, layers = ("tiny-dinov2", 84, (0, 1)) if quick else ("dinov2_vitl14", 518, (5, 11, 17, 23))
    ad_arch, edge = ("tiny-dinov2", 56) if quick else ("dinov2_vits14", 448)
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)  # an MVTec-size image
    enc = build_dino(ModelSpec("dino", musc_arch), batch_size=1, image_size=musc_size)
    secs, use = timed(lambda: enc.encode_whole([image], layers), repeats)
    tokens, cls = enc.encode_whole([image], layers)
    rows = [(f"MuSc {musc_arch}/{musc_size}: token stage (s per image; CPU use {use:.1f} cores)", f"{secs:.2f}"),
            (f"MuSc {musc_arch}/{musc_size}: musc_tokens unit (MB stored per image)",
             f"{stored_mb(KEY.format('musc_tokens'), {TOKENS: tokens[0], CLASS_TOKEN: cls[0]}):.1f}")]
    ad = build_dino(ModelSpec("dino", ad_arch))
    secs, use = timed(lambda: ad.encode_patches(image, edge), repeats)
    patches, grid = ad.encode_patches(image, edge)
    test_mb = stored_mb(KEY.format("dino_tokens"), {DINO_TOKENS: patches[None]})
    rotated = patches[None] + np.random.default_rng(2).normal(0, 0.1, (8, *patches.shape)).astype(np.float32)
    ref_mb = stored_mb(KEY.format("dino_tokens"), {DINO_TOKENS: rotated})  # 8 distinct token sets (identical ones compress)
    rows += [(f"AnomalyDINO {ad_arch}/{edge}: token stage (s per image, grid {grid[0]} x {grid[1]}; CPU use "
              f"{use:.1f} cores)", f"{secs:.2f}"),
             (f"AnomalyDINO {ad_arch}/{edge}: dino_tokens unit (MB stored: a test image; a reference, 8 rotations)",
              f"{test_mb:.2f}; {ref_mb:.1f}")]
    return rows, patches


def scoring_rows(patches_pc: np.ndarray, repeats: int) -> list[tuple[str, str]]:
    """AnomalyDINO's per-image scoring against memories of k references (random tokens near the
    test's), every patch searched (no masking: the most work); the mask's own cost beside."""
    from zsad.anomalydino import anomaly_map, foreground_mask, image_score, patch_distances
    rng = np.random.default_rng(1)
    grid = (int(np.sqrt(len(patches_pc))),) * 2
    secs, use = timed(lambda: foreground_mask(patches_pc, grid), repeats)
    rows = [(f"AnomalyDINO foreground mask (PCA, morphology; s per image; CPU use {use:.1f} cores)", f"{secs:.3f}")]
    for shots in (1, 16):
        for rotations in (1, 8):
            memory = (np.tile(patches_pc, (shots * rotations, 1))
                      + rng.normal(0, 0.5, (shots * rotations * len(patches_pc), patches_pc.shape[1]))).astype(np.float32)

            def score() -> None:
                d = patch_distances(patches_pc, memory)
                image_score(d)
                anomaly_map(d.reshape(grid), size=1024)
            secs, use = timed(score, repeats)
            rows.append((f"AnomalyDINO scoring, {shots} shot(s), {'8 rotations' if rotations == 8 else 'no rotation'} "
                         f"({len(memory)} memory patches, every test patch; s per image; CPU use {use:.1f} cores)", f"{secs:.3f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny random towers, one repeat: seconds")
    args = ap.parse_args()
    import torch
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    repeats = 1 if args.quick else 2
    rows, patches = token_rows(args.quick, repeats)
    rows += scoring_rows(patches, repeats)
    print_rows(rows)


if __name__ == "__main__":
    main()

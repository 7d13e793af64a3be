"""Benchmark: per-image time of each model stage at the paper's sizes, random weights.

Compute does not depend on the weights' values, so this measures the real models' cost.
Also measures the CLIPSeg shared-vision path (vision once per tile, decoder per prompt)
against the plain ``forward`` that runs the vision encoder once per (tile, prompt).

    .venv/bin/python benchmarks/bench_models.py --device cpu --sam vit_b
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zsad.config import ModelSpec  # noqa: E402
from zsad.models import build_clip, build_clipseg, build_isnet, build_sam  # noqa: E402
from zsad.models._common import resize_batch  # noqa: E402
from zsad.models.clipseg import tokenize  # noqa: E402
from zsad.prompts import SEED_LOCALISING_PROMPTS  # noqa: E402


def clock(fn, device: str, repeats: int = 2) -> float:
    fn()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sam", default="vit_h", choices=["vit_h", "vit_l", "vit_b"])
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--image", type=int, default=1024)
    args = ap.parse_args()
    dev = args.device
    img = np.random.default_rng(0).integers(0, 255, (args.image, args.image, 3), dtype=np.uint8)
    tiles = [img[:352, :352]] * args.tiles
    rows = {}
    isnet = build_isnet(ModelSpec("isnet", "isnet"), device=dev)
    rows["IS-Net (1024 px)"] = clock(lambda: isnet.predict(img), dev)
    clip = build_clip(ModelSpec("clip", "ViT-B-16-plus-240"), device=dev)
    rows[f"CLIP image, {args.tiles} tiles"] = clock(lambda: clip.encode_images(tiles), dev)
    seg = build_clipseg(ModelSpec("clipseg", "rd64-refined"), device=dev)
    prompts = list(SEED_LOCALISING_PROMPTS)
    rows[f"CLIPSeg shared vision, {args.tiles} tiles x 19"] = clock(lambda: seg.predict(tiles, prompts), dev)
    ids, mask = tokenize(prompts)
    from PIL import Image
    x = resize_batch(tiles, 352, Image.BILINEAR, seg.mean, seg.std).to(dev)

    @torch.inference_mode()
    def plain():
        for t in range(len(tiles)):
            seg.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), pixel_values=x[t:t + 1].repeat(19, 1, 1, 1))
    rows[f"CLIPSeg plain forward, {args.tiles} tiles x 19"] = clock(plain, dev, 1)
    sam = build_sam(ModelSpec("sam", args.sam), device=dev)
    rows[f"SAM {args.sam} automatic masks"] = clock(lambda: sam.generate(img), dev, 1)
    print(f"\nmodel benchmark on {dev} ({torch.get_num_threads()} threads), image {args.image} px, random weights")
    for name, t in rows.items():
        print(f"{name:<42}: {t:8.3f} s")
    shared = rows[f"CLIPSeg shared vision, {args.tiles} tiles x 19"]
    print(f"CLIPSeg shared-vision speed-up: {rows[f'CLIPSeg plain forward, {args.tiles} tiles x 19'] / shared:.1f}x")


if __name__ == "__main__":
    main()

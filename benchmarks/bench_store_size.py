"""Store bytes per image per stage on paper-shaped arrays, and what the CLIPSeg storage dtype
does to the pixel metrics.

Arrays are shaped as the paper's models make them for a 1024x768 image: IS-Net uint8 map, 60
SAM masks (bit-packed), foreground mask and labels, 3 tiles of CLIP embeddings (640) and 3 x 19
CLIPSeg maps of 352 x 352. CLIPSeg logits are realistic rather than white noise: CLIPSeg's
decoder upsamples a 22 x 22 token grid, so each map is smooth noise at that scale (logits
around -7, spread 2) plus, on defective images, a small raised blob. The same logits are stored
as float16 probabilities (the old cache) and as ``logit8`` (the new one); the pixel metrics of
the fused (harmonic) maps are computed from each, against float32.

    .venv/bin/python benchmarks/bench_store_size.py [--images 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zsad.stores import StageStore
from zsad.metrics import PixelAccumulator
from zsad.pixelmaps import fuse_prompt_maps, load_maps, store_maps

H, W, T, L, S = 768, 1024, 3, 19, 352


def smooth(rng: np.random.Generator, shape: tuple[int, ...], grid: int = 22) -> np.ndarray:
    coarse = torch.from_numpy(rng.normal(size=(int(np.prod(shape[:-2])), 1, grid, grid)).astype(np.float32))
    return F.interpolate(coarse, size=shape[-2:], mode="bilinear", align_corners=False).numpy().reshape(shape)


def blob(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return ((y - cy) ** 2 + (x - cx) ** 2) <= r ** 2


def clipseg_logits(rng: np.random.Generator, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    logits = -7.0 + 2.0 * smooth(rng, (T, L, S, S))
    mask = np.zeros((T, S, S), bool)
    if defect:
        mask[0] = blob(S, S, *rng.uniform(80, 270, 2), rng.uniform(10, 30))
        logits[0] += mask[0][None] * rng.uniform(0.5, 3.0, (L, 1, 1))  # faint: metrics well below 100
    return logits.astype(np.float32), mask


def other_stages(rng: np.random.Generator) -> dict[str, dict[str, tuple[np.ndarray, tuple[str, ...]]]]:
    fg = blob(H, W, 384, 512, 300)
    masks = np.stack([blob(H, W, *rng.uniform(100, 700, 2), rng.uniform(20, 200)) for _ in range(60)])
    labels = fg.astype(np.int32)
    return {
        "isnet": {"prob_hw": (np.where(fg, 250, 3).astype(np.uint8), ("y", "x"))},
        "sam": {"masks_packed": (np.packbits(masks.reshape(60, -1), axis=1), ("mask", "packed_byte")),
                "scores_n": (rng.random(60).astype(np.float32), ("mask",)),
                "boxes_xyxy": (rng.integers(0, 700, (60, 4)).astype(np.int32), ("mask", "corner"))},
        "foreground": {"mask_hw": (fg, ("y", "x")), "labels_hw": (labels, ("y", "x"))},
        "tiles": {"boxes_xyxy": (rng.integers(0, 400, (T, 4)).astype(np.int32), ("tile", "corner"))},
        "clip_image": {"emb_td": (rng.normal(size=(T, 640)).astype(np.float32), ("tile", "embed"))},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 images: seconds")
    a = ap.parse_args()
    if a.quick:
        a.images = 2
    work = Path(tempfile.mkdtemp(prefix="zsad-bench-size-"))
    rng = np.random.default_rng(0)
    st = StageStore(work / "store.zarr")
    acc = {k: PixelAccumulator() for k in ("float32", "float16", "logit8")}
    for i in range(a.images):
        for stage, arrays in other_stages(rng).items():
            st.write_unit(f"{stage}/h/bench/c/test/{i:04d}", arrays)
        logits, mask = clipseg_logits(rng, defect=i % 2 == 1)
        for dt in ("float16", "logit8"):
            st.write_unit(f"clipseg/{dt}/bench/c/test/{i:04d}", {"maps_tlhw": (store_maps(logits, dt),
                                                                             ("tile", "prompt", "y", "x"))})
        probs = {
            "float32": load_maps(store_maps(logits, "float32")),
            "float16": load_maps(store_maps(logits, "float16")),
            "logit8": load_maps(store_maps(logits, "logit8")),
        }
        for k, p in probs.items():
            fused = fuse_prompt_maps(p, "harmonic")
            for t in range(T):
                acc[k].update(mask[t], fused[t])
    per = {}
    for stage in ("isnet", "sam", "foreground", "tiles", "clip_image"):
        per[stage] = st.size_bytes(f"{stage}/h") / a.images
    f16, l8 = st.size_bytes("clipseg/float16") / a.images, st.size_bytes("clipseg/logit8") / a.images
    others = sum(per.values())
    print(f"{a.images} paper-shaped images (1024x768, {T} tiles x {L} prompts x {S}^2); bytes per image on disk\n")
    print("| stage | MB per image |\n|---|---:|")
    for stage, b in per.items():
        print(f"| {stage} | {b / 1e6:.2f} |")
    print(f"| clipseg, float16 probabilities (old) | {f16 / 1e6:.2f} |\n| clipseg, logit8 (new) | {l8 / 1e6:.2f} |")
    print(f"| **all stages, old / new** | **{(others + f16) / 1e6:.2f} / {(others + l8) / 1e6:.2f}** |\n")
    ref = acc["float32"].result()
    print("pixel metrics of the fused maps, difference from float32 (points of %):\n")
    print("| stored as | " + " | ".join(ref) + " |\n|---|" + "---:|" * len(ref))
    for k in ("float16", "logit8"):
        r = acc[k].result()
        print(f"| {k} | " + " | ".join(f"{100 * (r[m] - ref[m]):+.3f}" for m in ref) + " |")
    print("| (float32 values) | " + " | ".join(f"{100 * ref[m]:.2f}" for m in ref) + " |")


if __name__ == "__main__":
    main()

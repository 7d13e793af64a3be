"""zsad's SAM generator against segment-anything's on a device (random weights, realistic
survivors), a few image sizes: identical at stock's batches, else the README's tolerance.

    .venv/bin/python benchmarks/sam_cuda_equality.py [--device cuda] [--sam vit_h]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
VARIANTS = {"new": {}, "new+batch": {"points_per_batch": 0}, "new+batch+shared": {"points_per_batch": 0,
            "share_image_side": True}, "new+batch+bf16": {"points_per_batch": 0, "precision": "bf16"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sam", default="vit_h")
    ap.add_argument("--sizes", default="1024x768,768x1024,1500x1000")
    ap.add_argument("--quick", action="store_true", help="the tiny SAM on the CPU at 256x192: the script runs "
                    "(the equality that matters is on a GPU)")
    a = ap.parse_args()
    if a.quick:
        a.device, a.sam, a.sizes = "cpu", "tiny", "256x192"
    import numpy as np
    from zsad.config import ModelSpec, SamGeneratorConfig
    from zsad.flows.configs import check_device
    from zsad.models import build_sam
    from zsad.models.sam_compare import compare_masks
    from zsad.models.sam_survivors import install_survivors
    check_device(a.device)
    base = SamGeneratorConfig()
    stock = build_sam(ModelSpec("sam", a.sam), device=a.device, generator=dataclasses.replace(base, engine="stock"))
    install_survivors(stock)
    print(f"\n{a.sam}, random weights with realistic survivors, on {a.device}: zsad against segment-anything\n")
    print("| image | variant | masks (zsad / stock) | identical | min IoU | max score diff | matched (IoU >= 0.9) | "
          "within tolerance |\n|---|---|---|---|---|---|---|---|")
    segs = {}
    for v, opts in VARIANTS.items():
        segs[v] = build_sam(ModelSpec("sam", a.sam), device=a.device, generator=dataclasses.replace(base, **opts))
        install_survivors(segs[v])
    for size in a.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        img = np.random.default_rng(w * h).integers(0, 255, (h, w, 3), dtype=np.uint8)
        ref = stock.generate_stock(img)
        for v, seg in segs.items():
            r = compare_masks(seg.generate(img), ref)
            ok = r.identical if v == "new" else (r.close() if "bf16" not in v else
                                                 abs(r.n_a - r.n_b) <= 0.1 * r.n_b and r.matched >= 0.9)
            print(f"| {size} | {v} | {r.n_a} / {r.n_b} | {r.identical} | {r.min_iou:.6f} | {r.max_score_diff:.2e} | "
                  f"{r.matched:.3f} | {ok} |", flush=True)


if __name__ == "__main__":
    main()

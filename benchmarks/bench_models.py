"""Per-stage cost of the published architectures, random weights (compute does not depend on
the weights' values): IS-Net at 1024, SAM ViT-H automatic masks, CLIP ViT-B-16-plus-240 tiles
and prompts, CLIPSeg rd64-refined (ViT-B/16 at 352) maps.

Each stage runs in its own process (so peak memory is that stage's: max RSS on CPU, the CUDA
allocator's peak on a GPU), after a warm-up, synchronised on CUDA. SAM on a CPU takes ~10
minutes per image: ``--sam-batches K`` times the encoder and K point batches and extrapolates
to the grid's batches (said in the table). The output is a Markdown table whose format stays
the same, so a GPU run can be pasted into the README as it is.

    .venv/bin/python benchmarks/bench_models.py [--device cuda] [--sam-batches 2] [--points-per-side 32]
    .venv/bin/python benchmarks/bench_models.py --device cuda --images-per-batch 8 --batch 64 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STAGES = ("isnet", "sam", "clip_image", "clipseg", "clip_text")


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock(fn, device: str, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()  # warm-up (allocations, cuDNN autotune, lazy init)
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def _image(a):
    """A random (H, W, 3) uint8 image of ``--image-size``."""
    import numpy as np
    w, h = (int(v) for v in a.image_size.split("x"))
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def measure(stage: str, a) -> dict:
    """One stage in this process: seconds per image (per class for clip_text) and what it ran."""
    from zsad.config import ModelSpec, SamGeneratorConfig
    from zsad.models import build_clip, build_clipseg, build_isnet, build_sam
    from zsad.models.sam_survivors import install_survivors
    dev, img, k = a.device, _image(a), a.images_per_batch
    tiles = [img[:352, :352]] * a.tiles * k  # k images' tiles in one call (the GPU path), timed per image
    if stage == "isnet":
        m = build_isnet(ModelSpec("isnet", "tiny" if a.tiny else "isnet"), device=dev)
        return {"s": _clock(lambda: m.predict(img), dev, a.repeats), "what": "IS-Net general-use, 1024 px",
                "per": "image"}
    if stage == "clip_image":
        m = build_clip(ModelSpec("clip", _clip(a)), device=dev, batch_size=a.batch, precision=a.precision)
        return {"s": _clock(lambda: m.encode_images(tiles), dev, a.repeats) / k,
                "what": f"CLIP ViT-B-16-plus-240, {a.tiles} tiles at 240{_mode(a)}", "per": "image"}
    if stage == "clip_text":
        from zsad.prompts import build_prompt_set
        m = build_clip(ModelSpec("clip", _clip(a)), device=dev)
        texts = build_prompt_set("candle").texts
        return {"s": _clock(lambda: m.encode_texts(texts), dev, 1),
                "what": f"CLIP text, {len(texts)} prompts (once per class)", "per": "class"}
    if stage == "clipseg":
        from zsad.prompts import SEED_LOCALISING_PROMPTS
        m = build_clipseg(ModelSpec("clipseg", "tiny" if a.tiny else "rd64-refined"), device=dev, batch_size=a.batch,
                          precision=a.precision)
        patch = m.model.config.vision_config.patch_size
        prompts = list(SEED_LOCALISING_PROMPTS)
        return {"s": _clock(lambda: m.predict_logits(tiles, prompts), dev, a.repeats) / k,
                "what": f"CLIPSeg rd64-refined (ViT-B/{patch}, 352 px), {a.tiles} tiles x {len(prompts)} prompts"
                        f"{_mode(a)}", "per": "image"}
    if stage == "sam":
        gen = SamGeneratorConfig(points_per_side=a.points_per_side).with_options(a.sam_options or "")
        m = build_sam(ModelSpec("sam", "tiny" if a.tiny else a.sam), device=dev, generator=gen)
        n_batches = math.ceil(a.points_per_side ** 2 / (gen.points_per_batch or 64))
        whole = a.survivors or a.sam_options or a.sam_batches <= 0 or a.sam_batches >= n_batches
        if whole or dev.startswith("cuda"):  # a GPU runs the grid; so do survivors and zsad's options
            synth = install_survivors(m) if a.survivors else {"seconds": 0.0}
            out = {}
            if dev.startswith("cuda"):
                m.generate(img)  # warm-up (a CPU would spend minutes on it)
            synth["seconds"] = 0.0
            s = _clock(lambda: out.__setitem__("m", m.generate(img)), dev, 1, warmup=False) - synth["seconds"]
            what = f"SAM {a.sam}, {a.points_per_side}x{a.points_per_side} points" + \
                (f", {a.sam_options}" if a.sam_options else "") + \
                (f", {len(out['m'].scores_n)} masks (realistic survivors)" if a.survivors else "")
            return {"s": s, "what": what, "per": "image"}
        return _sam_extrapolated(m, img, gen, n_batches, a)
    raise ValueError(f"unknown stage {stage!r}; known: {STAGES}")


def _sam_extrapolated(m, img, gen, n_batches: int, a) -> dict:
    """Encoder once + ``a.sam_batches`` point batches, scaled to the grid's ``n_batches``."""
    import numpy as np
    import torch
    g, dev = m.stock, a.device
    with torch.inference_mode():  # on a CPU a warm-up of the encoder would cost minutes and change little
        enc = _clock(lambda: g.predictor.set_image(img), dev, 1, warmup=False)
        pts = g.point_grids[0][: gen.points_per_batch] * np.array(img.shape[1::-1])[None]
        crop = [0, 0, img.shape[1], img.shape[0]]
        per_batch = _clock(lambda: g._process_batch(pts, img.shape[:2], crop, img.shape[:2]), dev, a.sam_batches,
                           warmup=False)
        decoder, upsample = _sam_batch_parts(g, pts, img.shape[:2], dev)
    return {"s": enc + n_batches * per_batch, "what": f"SAM {a.sam}, {a.points_per_side}x{a.points_per_side} points "
            f"(encoder {enc:.1f} s + {n_batches} batches x {per_batch:.1f} s, from {a.sam_batches} timed)",
            "per": "image", "encoder": enc, "per_batch": per_batch, "points_per_batch": gen.points_per_batch,
            "decoder": decoder, "upsample": upsample}


def _sam_batch_parts(g, pts, size_hw, dev: str) -> tuple[float, float]:
    """One point batch split: prompt encoder + mask decoder, and upsampling its 3 masks per
    point to the image (the rest of a batch: stability scores, boxes, RLE of full-size masks)."""
    import torch
    p = g.predictor
    coords = torch.as_tensor(p.transform.apply_coords(pts, size_hw), device=p.device)[:, None, :]
    labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=p.device)
    out = {}

    def decode():
        sparse, dense = p.model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        out["low"], _ = p.model.mask_decoder(
            image_embeddings=p.features,
            image_pe=p.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
    decoder = _clock(decode, dev, 1, warmup=False)
    upsample = _clock(lambda: p.model.postprocess_masks(out["low"], p.input_size, p.original_size), dev, 1,
                      warmup=False)
    return decoder, upsample


def _clip(a) -> str:
    return "tiny" if a.tiny else "ViT-B-16-plus-240"


def _mode(a) -> str:
    return (f", {a.images_per_batch} images per batch" if a.images_per_batch > 1 else "") + \
        (f", {a.precision}" if a.precision != "fp32" else "")


def _peak_mb(device: str) -> float:
    import torch
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (checked: a clear error without a GPU)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--sam", default="vit_h", choices=["vit_h", "vit_l", "vit_b"])
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--sam-batches", type=int, default=2, help="CPU: time this many point batches and extrapolate "
                                                               "(0: run the whole grid)")
    ap.add_argument("--tiles", type=int, default=4, help="tiles per image (VisA's mean is ~2-4)")
    ap.add_argument("--batch", type=int, default=16, help="tiles per forward pass")
    ap.add_argument("--images-per-batch", type=int, default=1, help="CLIP/CLIPSeg: tiles of N images per call")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="CLIP/CLIPSeg autocast")
    ap.add_argument("--image-size", default="1024x768", help="WxH of the test image")
    ap.add_argument("--survivors", action="store_true", help="SAM: realistic surviving masks (zsad.models."
                    "sam_survivors; the count is printed); runs the whole grid")
    ap.add_argument("--sam-options", default=None, help="SAM: zsad's generator options (shared, batch=auto, bf16, "
                    "compile); runs the whole grid")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="every stage's tiny random architecture (the GPU check's "
                    "dry run: the code paths, not the published costs)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one stage, print JSON
    ap.add_argument("--quick", action="store_true", help="--tiny, one repeat: seconds")
    a = ap.parse_args()
    if a.quick:
        a.tiny, a.repeats = True, 1
    if a.one:
        import torch
        torch.manual_seed(0)
        out = measure(a.one, a)
        print(json.dumps({**out, "peak_mb": _peak_mb(a.device)}))
        return
    from zsad.flows.configs import check_device
    check_device(a.device)
    rows, total = [], 0.0
    for stage in a.stages.split(","):
        args = [sys.executable, __file__, "--one", stage, *sys.argv[1:]]
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"{stage} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((stage, r))
        total += r["s"] if r["per"] == "image" else 0.0
    import torch
    where = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    kind = "tiny random architectures standing in for the published ones named (--tiny)" if a.tiny else \
        "published architectures, random weights"
    print(f"\nzsad precompute stages, {kind}; {where}; "
          f"{a.image_size} image, {a.tiles} tiles\n")
    print("| stage | what | seconds | per | peak memory (MB) |\n|---|---|---|---|---|")
    for stage, r in rows:
        print(f"| {stage} | {r['what']} | {r['s']:.3f} | {r['per']} | {r['peak_mb']:.0f} |")
    print(f"\nper image (all per-image stages): {total:.2f} s = {1 / total:.3f} images/s"
          f"{' (SAM extrapolated)' if 'sam' in a.stages and a.sam_batches > 0 and a.device == 'cpu' else ''}")
    sam = dict(rows).get("sam", {})
    if "decoder" in sam:
        print(f"\nSAM point batch ({sam['points_per_batch']} points): {sam['per_batch']:.2f} s; its parts, timed "
              f"separately: prompt encoder + mask decoder {sam['decoder']:.2f} s, upsampling the masks to the image "
              f"{sam['upsample']:.2f} s (the rest: stability scores, boxes, RLE)")
    if "encoder" in sam:  # cheaper SAM settings: the same encoder, fewer point batches
        print("\n| SAM points per side | point batches | SAM s/image | precompute s/image |\n|---|---|---|---|")
        for side in (32, 16, 8):
            n = math.ceil(side * side / sam["points_per_batch"])
            s = sam["encoder"] + n * sam["per_batch"]
            print(f"| {side} | {n} | {s:.1f} | {total - sam['s'] + s:.1f} |")


if __name__ == "__main__":
    main()

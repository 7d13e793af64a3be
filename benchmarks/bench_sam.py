"""SAM's automatic masks with realistic survivors: segment-anything's generator at an older
revision (old) against zsad's generator and its options (new), in one run.

Random weights keep about one mask per image; real weights keep 100-300. Each variant runs
with ``zsad.models.sam_survivors`` (the decoder runs as it is, realistic disc-shaped candidates
are added to its output), so the steps that grow with the surviving masks are timed as real
weights would make them. The number of masks is printed.

Per image, the split: image encoder; prompt encoder + mask decoder (the survivors' synthesis,
timed apart, subtracted); post-processing (the rest of mask generation: upsampling, filters,
boxes, NMS, RLE for stock, packing); the foreground stage's IS-Net filtering of the masks as the
store keeps them (old: unpack every mask, then the coverage test; new: bit counts on the packed
masks, only the kept ones unpacked). Each variant runs in its own process, on the whole grid
(no extrapolation), after one warm-up image on a GPU (none on a CPU: minutes each); the variants
run interleaved ``--rounds`` times and the table shows each one's fastest round.

    .venv/bin/python benchmarks/bench_sam.py [--old 0d82c27] [--device cuda] [--sam vit_h]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_models import _image, _peak_mb, _sync  # noqa: E402  (one test image, one clock, one memory peak)
CPU_VARIANTS = ("old", "new", "new+shared")  # stock: segment-anything's generator in this checkout
GPU_VARIANTS = ("old", "new", "new+batch", "new+batch+shared", "new+batch+bf16", "new+batch+bf16+compile")
OPTIONS = {"shared": {"share_image_side": True}, "batch": {"points_per_batch": 0}, "bf16": {"precision": "bf16"},
           "compile": {"compile": True}}


def _survivors_module(path: Path):
    spec = importlib.util.spec_from_file_location("sam_survivors", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _timer(module, totals: dict, key: str, device: str):
    """Forward hooks adding ``module``'s forward time to ``totals[key]`` (synchronised on CUDA)."""
    def pre(*_):
        _sync(device)
        totals["_t" + key] = time.perf_counter()

    def post(*_):
        _sync(device)
        totals[key] += time.perf_counter() - totals.pop("_t" + key)
    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


def _foreground_old_and_new(masks_packed, h: int, w: int, new: bool) -> tuple[float, int]:
    """The foreground stage's work on the stored masks with an IS-Net map (an ellipse over half
    the image): seconds and the number of masks kept."""
    import numpy as np
    from zsad.config import ForegroundConfig
    yy, xx = np.mgrid[:h, :w]
    isnet = (((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 <= 1).astype(np.uint8) * 255
    start = time.perf_counter()
    if new:
        from zsad.foreground import extract_foreground_packed
        fg = extract_foreground_packed(masks_packed, isnet, ForegroundConfig())
    else:
        from zsad.foreground import extract_foreground
        from zsad.tasks.sam import unpack_masks
        fg = extract_foreground(unpack_masks(masks_packed, h, w), isnet, ForegroundConfig())
    return time.perf_counter() - start, int(fg.kept_n.sum())


def measure(variant: str, a) -> dict:
    """One variant in this process (``old`` runs in the old checkout): seconds per image and its parts."""
    import dataclasses
    import numpy as np
    import torch
    from zsad.config import ModelSpec, SamGeneratorConfig
    from zsad.models import build_sam
    name, *opts = variant.split("+")
    gen = SamGeneratorConfig(points_per_side=a.points_per_side)
    if name == "new":
        gen = dataclasses.replace(gen, **{k: v for o in opts for k, v in OPTIONS[o].items()})
    elif name == "stock":  # segment-anything's generator in this checkout (the old revision not needed)
        gen = dataclasses.replace(gen, engine="stock")
    seg = build_sam(ModelSpec("sam", a.sam), device=a.device, generator=gen)
    stats = _survivors_module(Path(a.survivors)).install_survivors(seg)
    totals = {"encoder": 0.0, "decoder": 0.0}
    _timer(seg.sam.image_encoder, totals, "encoder", a.device)
    decoder = getattr(getattr(seg, "zsad", None), "decoder", None) or seg.sam.mask_decoder
    _timer(decoder, totals, "decoder", a.device)
    _timer(seg.sam.prompt_encoder, totals, "decoder", a.device)
    img = _image(a)
    h, w = img.shape[:2]
    cold = None
    if a.device.startswith("cuda"):
        start = time.perf_counter()
        seg.generate(img)
        _sync(a.device)
        cold = time.perf_counter() - start
        torch.cuda.reset_peak_memory_stats()
    totals.update(encoder=0.0, decoder=0.0)
    stats["seconds"] = 0.0
    runs = a.repeats if a.device.startswith("cuda") else 1
    start = time.perf_counter()
    for _ in range(runs):
        out = seg.generate(img)
    _sync(a.device)
    total = (time.perf_counter() - start) / runs
    if not hasattr(out, "masks_packed"):  # the old sam stage packed the masks on the host
        start = time.perf_counter()
        packed = np.packbits(out.masks_nhw.reshape(len(out.masks_nhw), -1), axis=1)
        total += time.perf_counter() - start
    else:
        packed = out.masks_packed
    enc, dec = totals["encoder"] / runs, (totals["decoder"] - stats["seconds"]) / runs
    fg_s, kept = _foreground_old_and_new(packed, h, w, new=name != "old")
    peak = _peak_mb(a.device)
    return {"variant": variant, "masks": len(out.scores_n), "kept": kept, "total": total - stats["seconds"] / runs,
            "encoder": enc, "decoder": dec, "post": total - stats["seconds"] / runs - enc - dec, "foreground": fg_s,
            "synthesis": stats["seconds"] / runs, "cold": cold, "peak_mb": peak,
            "points_per_batch": getattr(getattr(seg, "config", None), "points_per_batch", 64)}


def _run(variant: str, a, python: str, cwd: Path) -> dict:
    script = cwd / "benchmarks" / "bench_sam.py"
    args = [python, str(script), "--one", variant, "--survivors", str(ROOT / "zsad/models/sam_survivors.py"),
            "--sam", a.sam, "--device", a.device, "--image-size", a.image_size,
            "--points-per-side", str(a.points_per_side), "--repeats", str(a.repeats)]
    cpu0 = os.times()
    out = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    cpu1 = os.times()
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["cpu_seconds"] = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    r["wall"] = cpu1.elapsed - cpu0.elapsed
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="0d82c27", help="the revision whose stock generator is 'old'")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sam", default="vit_h", choices=["vit_h", "vit_l", "vit_b", "tiny"])
    ap.add_argument("--image-size", default="1024x768", help="WxH")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed images per variant on a GPU (1 on a CPU)")
    ap.add_argument("--rounds", type=int, default=2, help="each variant this many times, interleaved; the "
                    "table shows each one's fastest")
    ap.add_argument("--variants", default=None, help="comma-separated; default: " + ",".join(CPU_VARIANTS)
                    + " on a CPU, " + ",".join(GPU_VARIANTS) + " on a GPU")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--survivors", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="the tiny SAM on a 256x192 image, 8 points a side, one "
                    "round: seconds")
    a = ap.parse_args()
    if a.quick:
        a.sam, a.image_size, a.points_per_side, a.rounds, a.repeats = "tiny", "256x192", 8, 1, 1
    if a.one:
        import torch
        torch.manual_seed(0)
        print(json.dumps(measure(a.one, a)))
        return
    from zsad.flows.configs import check_device
    check_device(a.device)
    from oldrev import checkout, environment
    variants = (a.variants.split(",") if a.variants else
                list(GPU_VARIANTS if a.device.startswith("cuda") else CPU_VARIANTS))
    work = Path(tempfile.gettempdir()) / "zsad-bench-sam"
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(a.rounds):  # interleaved: a noisy machine's slow spells spread over all variants
        for v in variants:
            if v == "old":
                src = checkout(work, a.old, Path(__file__), "bench_sam.py")
                runs[v].append(_run(v, a, str(environment(src)), src))
            else:
                runs[v].append(_run(v, a, sys.executable, ROOT))
            print(f"  round {round_ + 1}, {v}: {runs[v][-1]['total']:.2f} s", file=sys.stderr, flush=True)
    _table([min(rs, key=lambda r: r["total"]) for rs in runs.values()], a)
    print("\nevery round's SAM s/image: " + "; ".join(f"{v} " + ", ".join(f"{r['total']:.1f}" for r in rs)
                                                 for v, rs in runs.items()) + f" (the table: each variant's best of "
          f"{a.rounds})")


def _table(rows: list[dict], a) -> None:
    import torch
    where = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else \
        f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    print(f"\nSAM {a.sam} automatic masks, random weights with realistic survivors; {where}; {a.image_size} image, "
          f"{a.points_per_side}x{a.points_per_side} points; old = segment-anything's generator at {a.old}\n")
    print("| variant | points/batch | masks | kept by IS-Net | encoder s | decoder s | post-processing s | "
          "foreground s | SAM s/image | vs old | CPU use | peak MB | cold first image s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    old = next((r["total"] for r in rows if r["variant"] == "old"), None)
    for r in rows:
        ratio = f"{old / r['total']:.2f}x" if old else "-"
        use = f"{100 * r['cpu_seconds'] / r['wall']:.0f} %"
        cold = f"{r['cold']:.1f}" if r.get("cold") is not None else "-"
        print(f"| {r['variant']} | {r['points_per_batch'] or 'auto'} | {r['masks']} | {r['kept']} | {r['encoder']:.3f} | "
              f"{r['decoder']:.3f} | {r['post']:.3f} | {r['foreground']:.3f} | {r['total']:.3f} | {ratio} | {use} | "
              f"{r['peak_mb']:.0f} | {cold} |")
    synthesis = ", ".join(f"{r['synthesis']:.2f}" for r in rows)
    print(f"\nsurvivor synthesis (benchmark only, subtracted): {synthesis} s; "
          "CPU use = the variant's process CPU time over its wall time, model build included")


if __name__ == "__main__":
    main()

"""Each cheap precompute win, before and after, in one run (CPU by default).

1. CLIP text: one class's prompt ensemble through ViT-B-16-plus-240 (random weights), all 77
   token positions (before) vs trimmed after the longest prompt (after), and the largest
   difference between the two embeddings.
2. CLIPSeg prompt embeddings: one image (4 tiles x 19 prompts) through rd64-refined (ViT-B/16,
   352 px): the embeddings recomputed for every image (before) vs kept per prompt list (after).
3. Decoding: a cold precompute of a synthetic set with the tiny models: decodes per image and
   seconds, every stage decoding again (before) vs one decode per image per shard (after).
4. A warm (fully cached) precompute: store reads per image, image records read by every stage
   (before) vs once per shard (after).

    .venv/bin/python benchmarks/bench_cheap_wins.py [--device cpu] [--images 64]
"""

from __future__ import annotations

from zsad.flows.command_requests import PrecomputeRequest
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - t0) / repeats, out


def text_and_clipseg(device: str, tiny: bool = False) -> list[tuple]:
    from zsad.config import ModelSpec
    from zsad.models import build_clip, build_clipseg
    from zsad.prompts import SEED_LOCALISING_PROMPTS, build_prompt_set
    clip = build_clip(ModelSpec("clip", "tiny" if tiny else "ViT-B-16-plus-240"), device=device)
    texts = build_prompt_set("candle").texts
    before, full = timed(lambda: clip.encode_texts(texts, trim=False))
    after, trimmed = timed(lambda: clip.encode_texts(texts))
    diff = float(np.abs(full - trimmed).max())
    rows = [(f"CLIP text, {len(texts)} prompts (s per class)", before, after, f"largest difference {diff:.1e}")]
    seg = build_clipseg(ModelSpec("clipseg", "tiny" if tiny else "rd64-refined"), device=device)
    img = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    tiles, prompts = [img[:352, :352]] * 4, list(SEED_LOCALISING_PROMPTS)
    seg.predict_logits(tiles, prompts)  # warm-up

    def recompute():
        seg._cond.clear()
        return seg.predict_logits(tiles, prompts)
    before, a = timed(recompute, 2)
    after, b = timed(lambda: seg.predict_logits(tiles, prompts), 2)
    rows.append(("CLIPSeg, 4 tiles x 19 prompts (s per image)", before, after,
                 f"identical: {bool(np.array_equal(a, b))}"))
    return rows


def decoding_and_records(n_images: int) -> list[tuple]:
    from zsad.flows.precompute import run_precompute
    from zsad.stores import StageStore, unit_key
    from zsad.tasks import decoded, runner, worker
    from zsad.config import PipelineConfig
    from zsad.datasets import SyntheticSpec, read_dataset, write_synthetic
    work = Path(tempfile.mkdtemp(prefix="zsad-bench-wins-"))
    per_defect = max(1, n_images // 16)
    write_synthetic(work / "data", SyntheticSpec(image_size=512, n_good=n_images // 2 - 4 * per_defect,
                                                 n_per_defect=per_defect, n_train=0))
    samples, cfg = read_dataset("synthetic", str(work / "data")), PipelineConfig.tiny()
    n, rows, cold = len(samples), [], {}
    for shared in (False, True):
        decoded.enable(shared)
        decoded.STATS.clear()
        worker.forget_stores()
        t, _ = timed(
            lambda: run_precompute(
                PrecomputeRequest(store=str(work / f"s{shared}.zarr"), progress=False, name="synthetic"),
                samples=samples,
                cfg=cfg,
            )
        )
        cold[shared] = (t, 1 + decoded.STATS["decoded"] / n)  # + the registration's own decode
    rows.append(("cold precompute, tiny models (s per image)", cold[False][0] / n, cold[True][0] / n,
                 f"decodes per image {cold[False][1]:.0f} -> {cold[True][1]:.0f}"))
    reads = {"n": 0}
    original_attrs, original_source = StageStore.complete_attrs, runner.image_source

    def counted(self, key, source=None, listed=None):
        reads["n"] += 1
        return original_attrs(self, key, source, listed)

    def every_time(store, image_hash, unit):  # before: each stage read the image record itself
        attrs = store.read_attrs(unit_key("image", image_hash, unit))
        return attrs["sha256"], attrs
    StageStore.complete_attrs = counted
    warm = {}
    for memo in (False, True):
        runner.image_source = original_source if memo else every_time  # where pending() looks it up
        worker.forget_stores()
        reads["n"] = 0
        t, _ = timed(
            lambda: run_precompute(
                PrecomputeRequest(store=str(work / "sTrue.zarr"), progress=False, name="synthetic"),
                samples=samples,
                cfg=cfg,
            ),
            3,
        )
        warm[memo] = (t, reads["n"] / 3 / n)
    runner.image_source, StageStore.complete_attrs = original_source, original_attrs
    rows.append(("warm precompute (ms per image)", 1000 * warm[False][0] / n, 1000 * warm[True][0] / n,
                 f"store reads per image {warm[False][1]:.0f} -> {warm[True][1]:.0f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=64, help="synthetic images (2 classes, 512 px) for 3 and 4")
    ap.add_argument("--quick", action="store_true", help="tiny models, 16 images: seconds")
    a = ap.parse_args()
    if a.quick:
        a.images = 16
    import torch
    rows = text_and_clipseg(a.device, tiny=a.quick) + decoding_and_records(a.images)
    print(f"\nprecompute cheap wins, {a.device} ({torch.get_num_threads()} threads); published architectures "
          f"with random weights for 1-2, tiny models and {a.images} synthetic 512 px images for 3-4\n")
    print("| what | before | after | before / after | note |\n|---|---|---|---|---|")
    for name, before, after, note in rows:
        print(f"| {name} | {before:.3f} | {after:.3f} | {before / after:.1f}x | {note} |")


if __name__ == "__main__":
    main()

"""Extra cost per image of the few-shot and mutual modes over zero-shot, at the paper's sizes.

Real-size shapes with random values (compute does not depend on the weights' or features'
values): ViT-B-16-plus-240 (random weights) for the encoder pass, its patch tokens (4 layers x
15 x 15 x 896, float16) for the scoring, an image of 1500 x 1000 with ``--tiles`` tiles.

1. Precompute: the CLIP tile pass without and with patch tokens (same pass), and the bytes a
   ``clip_patch`` unit takes in a Zarr store (written through ``zsad.stores.StageStore``).
2. Aggregation per image: zero-shot (fusion, tile scores, pasting: the baseline), few-shot
   against K-shot memories, mutual against a class of N images (cost grows linearly with N).

    .venv/bin/python benchmarks/bench_modes.py [--device cpu] [--tiles 2] [--classes-of 25 50 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS, GRID, WIDTH = 4, 15, 896  # ViT-B-16-plus-240: blocks 2, 5, 8, 11; 240 / 16 = 15; width 896


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def encoder_rows(device: str, tiles: int) -> list[tuple[str, str]]:
    from zsad.config import ModelSpec
    from zsad.models import build_clip
    clip = build_clip(ModelSpec("clip", "ViT-B-16-plus-240"), device=device)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (400, 400, 3), dtype=np.uint8) for _ in range(tiles)]
    plain, both = [], []
    for _ in range(5):  # interleaved, best of 5: the two passes differ by less than this machine's noise
        plain.append(timed(lambda: clip.encode_images(crops)))
        both.append(timed(lambda: clip.encode_images_and_patches(crops, None)))
    plain, both = min(plain), min(both)
    _, patches = clip.encode_images_and_patches(crops, None)
    size = _stored_bytes(patches)
    return [("CLIP tile pass, embeddings only (s per image)", f"{plain:.3f}"),
            ("CLIP tile pass, embeddings + patch tokens (s per image)", f"{both:.3f} ({both / plain:.2f}x)"),
            (f"clip_patch unit, {tiles} tiles (MB stored; raw {patches.nbytes / 1e6:.2f})", f"{size / 1e6:.2f}")]


def _stored_bytes(patches: np.ndarray) -> int:
    from zsad.stores import StageStore
    with tempfile.TemporaryDirectory() as tmp:
        st = StageStore(str(Path(tmp) / "s.zarr"))
        st.write_unit("clip_patch/0123456789abcdef/d/c/test/x", {"patches_tlyxc": (patches, ("tile", "layer", "y",
                                                                                              "x", "channel"))})
        return st.size_bytes()


def feats(rng: np.random.Generator, tiles: int) -> np.ndarray:
    return rng.normal(size=(tiles, LAYERS, GRID, GRID, WIDTH)).astype(np.float16)


def zero_shot_seconds(tiles: int) -> float:
    from zsad.aggregate import ImageEvidence, TextEvidence, aggregate_variants
    from zsad.config import AggregateConfig
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(tiles, 640)).astype(np.float32)
    text = TextEvidence(rng.normal(size=(882, 640)).astype(np.float32), np.arange(882) % 2 == 1, np.zeros(882, bool),
                        100.0)
    maps = rng.integers(0, 255, (tiles, 19, 352, 352), dtype=np.uint8)  # logit8 codes, as the cache holds them
    boxes = np.array([[0, 0, 700, 700], [650, 200, 1350, 900], [800, 100, 1500, 800]][:tiles])

    def one_image():  # the maps fused, then scored and pasted
        evidence = ImageEvidence.from_maps(emb_td=emb, maps_tlhw=maps, fusions=("harmonic",), boxes_xyxy=boxes,
                                           component_t=np.arange(tiles), image_hw=(1000, 1500))
        return aggregate_variants(evidence, text, [AggregateConfig()])
    return timed(one_image, 3)


def mode_rows(tiles: int, classes_of: list[int]) -> list[tuple[str, str]]:
    from zsad.patches import few_shot_scores, mutual_scores
    rng = np.random.default_rng(2)
    base = zero_shot_seconds(tiles)
    rows = [("zero-shot aggregation (s per image, the baseline)", f"{base:.3f}")]
    query = feats(rng, tiles)
    for shots in (1, 4):
        memory = feats(rng, tiles * shots)
        for r in (1, 3):
            s = timed(lambda: few_shot_scores(query, memory, r))
            rows.append((f"few-shot, {shots} shot(s), neighbourhood {r} (extra s per image)", f"{s:.3f}"))
    for n in classes_of:
        batch = {f"i{i}": feats(rng, tiles) for i in range(n)}
        ids = sorted(batch)
        queries = {q: batch[q] for q in ids[:4]}
        for r in (1, 3):
            blocks = [[(k, batch[k]) for k in ids[i: i + 16]] for i in range(0, n, 16)]
            t0 = time.perf_counter()
            mutual_scores(queries, blocks, 0.3, r)
            per_image = (time.perf_counter() - t0) / len(queries)
            rows.append((f"mutual, class of {n} images, neighbourhood {r} (extra s per image)", f"{per_image:.3f}"))
    return rows


def store_rows(tiles: int, n: int) -> list[tuple[str, str]]:
    """Mutual scores of a class through the store (reads included), as ``zsad evaluate`` runs
    them: Dask tasks of ``block`` query images, each reading the class ``block`` images at a time."""
    import dask
    from zsad.stores import StageStore, Unit, unit_key
    from zsad.tasks.patches import mutual_block
    from zsad.variants import Mutual
    rng, rows = np.random.default_rng(3), []
    agg = Mutual()
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "s.zarr")
        st, paths = StageStore(url), [f"d/c/test/{i:04d}" for i in range(n)]
        for p in paths:
            st.write_unit(unit_key("clip_patch", "0123456789abcdef", Unit.parse(p)),
                          {"patches_tlyxc": (feats(rng, tiles), ("tile", "layer", "y", "x", "channel"))})
        for block in (16, 64):
            view = st.read_only_view()  # scores returned, not written
            jobs = [dask.delayed(mutual_block)(view, "0123456789abcdef", "fedcba9876543210", agg, paths,
                                               paths[i: i + block], {}, block) for i in range(0, n, block)]
            t0 = time.perf_counter()
            dask.compute(*jobs, scheduler="threads")
            per = (time.perf_counter() - t0) / n
            rows.append((f"mutual through the store, class of {n}, query blocks of {block}, neighbourhood 3 "
                         "(extra s per image, reads included)", f"{per:.3f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tiles", type=int, default=2, help="tiles per image (VisA's multi-instance classes have more)")
    ap.add_argument("--classes-of", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--store-class", type=int, default=64, help="class size of the through-the-store measurement")
    ap.add_argument("--quick", action="store_true", help="classes of 4 and 8 images, a store class of 4: seconds")
    args = ap.parse_args()
    if args.quick:
        args.classes_of, args.store_class = [4, 8], 4
    import torch
    rows = encoder_rows(args.device, args.tiles) + mode_rows(args.tiles, args.classes_of)
    rows += store_rows(args.tiles, args.store_class)
    print(f"# modes: extra cost per image ({args.device}, torch threads {torch.get_num_threads()}, "
          f"{args.tiles} tiles per image)\n")
    print("| measure | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

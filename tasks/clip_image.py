"""Stage ``clip_image``: unit-norm CLIP embeddings of every tile, (T, D) float32."""

from __future__ import annotations

from typing import Any

from stores import unit_key

from .common import zsad_task
from .crops import image_crops, split_rows
from .runtime import decode_config, get_model, run_stage


@zsad_task("clip_image")
def clip_image(store_url: str, hashes: dict[str, str], units: list[str], cfg: dict[str, Any]) -> dict[str, list]:
    pc = decode_config(cfg)

    def one(store, model, unit, sha, attrs):  # a batch of one image: the exact per-image mode
        many(store, model, [(unit, sha, attrs)])

    def many(store, model, items):  # tiles of several images in shared batches (images_per_batch > 1)
        crops = [image_crops(store, hashes["tiles"], unit, attrs) for unit, _, attrs in items]
        for (unit, sha, _), emb in zip(items, split_rows(model.encode_images(sum(crops, [])), crops)):
            store.write_unit(unit_key("clip_image", hashes["clip_image"], unit), {"emb_td": (emb, ("tile", "embed"))},
                             source=sha)

    return run_stage(store_url, "clip_image", hashes, units, one,
                     lambda: get_model(pc.clip, device=pc.device, batch_size=pc.batch_size, precision=pc.precision),
                     decodes=True, compute_group=many, group=pc.images_per_batch)

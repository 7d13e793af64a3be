"""Stage ``sam``: SAM automatic masks, bit-packed: (N, ceil(H*W/8)) uint8."""

from __future__ import annotations

from typing import Any

import numpy as np

from stores import unit_key
from stores.schema import BOXES

from .common import zsad_task
from .decoded import image_of
from .runtime import decode_config, get_model, run_stage


def pack_masks(masks_nhw: np.ndarray) -> np.ndarray:
    return np.packbits(masks_nhw.reshape(masks_nhw.shape[0], -1), axis=1)


def unpack_masks(packed: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=h * w).reshape(-1, h, w).astype(bool)


@zsad_task("sam")
def sam_masks(store_url: str, hashes: dict[str, str], units: list[str], cfg: dict[str, Any]) -> dict[str, list]:
    pc = decode_config(cfg)

    def one(store, model, unit, sha, attrs):
        out = model.generate(image_of(attrs))
        store.write_unit(unit_key("sam", hashes["sam"], unit), {
            "masks_packed": pack_masks(out.masks_nhw),
            "scores_n": out.scores_n,
            BOXES: out.boxes_xyxy,
        }, {"height": attrs["height"], "width": attrs["width"]}, source=sha)

    return run_stage(store_url, "sam", hashes, units, one,
                     lambda: get_model(pc.sam, device=pc.device, generator=pc.sam_generator), decodes=True)

"""Stage ``isnet``: IS-Net foreground probability (uint8) per image."""

from __future__ import annotations

from typing import Any

from stores import unit_key

from .common import zsad_task
from .decoded import image_of
from .runtime import decode_config, get_model, run_stage


@zsad_task("isnet")
def isnet_maps(store_url: str, hashes: dict[str, str], units: list[str], cfg: dict[str, Any]) -> dict[str, list]:
    pc = decode_config(cfg)

    def one(store, model, unit, sha, attrs):
        prob = model.predict(image_of(attrs))
        store.write_unit(unit_key("isnet", hashes["isnet"], unit), {"prob_hw": prob}, source=sha)

    return run_stage(store_url, "isnet", hashes, units, one, lambda: get_model(pc.isnet, device=pc.device),
                     decodes=True)

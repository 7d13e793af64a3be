"""Stage ``tiles``: tile boxes per foreground component."""

from __future__ import annotations

from typing import Any

from stores import unit_key
from stores.schema import BOXES, COMPONENTS
from zsad.tiling import tile_image

from .common import zsad_task
from .runtime import decode_config, run_stage


@zsad_task("tiles")
def tiles(store_url: str, hashes: dict[str, str], units: list[str], cfg: dict[str, Any]) -> dict[str, list]:
    pc = decode_config(cfg)

    def one(store, _, unit, sha, attrs):
        key = unit_key("foreground", hashes["foreground"], unit)
        t = tile_image(store.read_array(key, "labels_hw"), store.read_array(key, "parts_c"), pc.tiling)
        store.write_unit(unit_key("tiles", hashes["tiles"], unit), {
            BOXES: t.boxes_xyxy, COMPONENTS: t.component_t,
            "kind_t": t.kind_t,
        }, source=sha)

    return run_stage(store_url, "tiles", hashes, units, one)

"""Stage ``tiles``: tile boxes per foreground component."""

from __future__ import annotations

from typing import Any

from stores import unit_key
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
            "boxes_xyxy": (t.boxes_xyxy, ("tile", "corner")), "component_t": (t.component_t, ("tile",)),
            "kind_t": (t.kind_t, ("tile",)),
        }, source=sha)

    return run_stage(store_url, "tiles", hashes, units, one)

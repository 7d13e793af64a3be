"""Every stage's arrays, by name, with their dimension names: the one place they are declared.

Names carry their layout (``boxes_xyxy``: corners x0, y0, x1, y1; ``maps_tlhw``: tile, prompt,
y, x), so a reader sees the shape at the call. ``StageStore.write_unit`` takes bare arrays and
finds their dimensions here (a bare array no stage declares is an error naming the stage's
arrays); the dimension names are what xarray shows (``stores.views``).

Example:
    >>> with_dims("tiles/ab12/visa/pcb1/test/000", {COMPONENTS: [0, 0, 1]})["component_t"][1]
    ('tile',)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# Names read in several modules.
BOXES = "boxes_xyxy"
COMPONENTS = "component_t"
EMBEDDINGS = "emb_td"
PATCHES = "patches_tlyxc"
MAPS = "maps_tlhw"
FUSED = "fused_thw"
PIXEL_MAP = "pixel_map_hw"
MUTUAL_SCORES = "scores_tyx"

PATCH_DIMS = ("tile", "layer", "y", "x", "channel")
STAGE_ARRAYS: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {},
    "isnet": {"prob_hw": ("y", "x")},
    "sam": {"masks_packed": ("mask", "packed_byte"), "scores_n": ("mask",), BOXES: ("mask", "corner")},
    "foreground": {"mask_hw": ("y", "x"), "labels_hw": ("y", "x"), "parts_c": ("component",),
                   "kept_n": ("mask",), "component_n": ("mask",)},
    "tiles": {BOXES: ("tile", "corner"), COMPONENTS: ("tile",), "kind_t": ("tile",)},
    "clip_image": {EMBEDDINGS: ("tile", "embed")},
    "clip_patch": {PATCHES: PATCH_DIMS},
    "clip_text": {"emb_pd": ("prompt", "embed"), "anomalous_p": ("prompt",), "seed_extension_p": ("prompt",),
                  "prompt": ("prompt",)},
    "clipseg": {MAPS: ("tile", "prompt", "y", "x"), "prompt": ("prompt",)},
    "memory": {PATCHES: PATCH_DIMS},
    "mutual": {MUTUAL_SCORES: ("tile", "y", "x")},
    "fused": {FUSED: ("tile", "y", "x")},
    "aggregate": {PIXEL_MAP: ("y", "x")},
    "thresholds": {},
    "errors": {},
}


def stage_of(key: str) -> str:
    return key.split("/", 1)[0]


def dims(stage: str, name: str) -> tuple[str, ...]:
    """The dimension names of array ``name`` of ``stage``; a ``ValueError`` naming the stage's
    arrays when it has no such array."""
    arrays = STAGE_ARRAYS.get(stage)
    if arrays is None or name not in arrays:
        known = ", ".join(arrays) if arrays else "none"
        raise ValueError(f"stage {stage!r} has no array {name!r} (its arrays: {known}); "
                         "declare new arrays in stores/schema.py")
    return arrays[name]


def with_dims(key: str, arrays: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    """``{name: (data, dims)}`` for a unit at ``key``: bare data gets its stage's dimensions, a
    given ``(data, dims)`` of a declared array must agree with them (undeclared arrays keep theirs)."""
    stage, out = stage_of(key), {}
    for name, value in arrays.items():
        if isinstance(value, tuple) and name not in STAGE_ARRAYS.get(stage, {}):
            out[name] = value  # an array no stage declares, with its dimensions (tests, tools)
            continue
        want = dims(stage, name)
        data, given = value if isinstance(value, tuple) else (value, want)
        if tuple(given) != want:
            raise ValueError(f"{key}: array {name!r} has dimensions {want} in stores/schema.py, got {tuple(given)}")
        out[name] = (data, want)
    return out


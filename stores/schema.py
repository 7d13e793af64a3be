"""Every stage's arrays, by name, with their dimension names, as ``zsad.stages`` declares them.

Names carry their layout (``boxes_xyxy``: corners x0, y0, x1, y1; ``maps_tlhw``: tile, prompt,
y, x), so a reader sees the shape at the call. ``StageStore.write_unit`` takes bare arrays and
finds their dimensions here (a bare array no stage declares is an error naming the stage's
arrays); the dimension names are what xarray shows (``zsad.stores.views``).

Example:
    >>> with_dims("tiles/ab12/visa/pcb1/test/000", {COMPONENTS: [0, 0, 1]})["component_t"][1]
    ('tile',)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from zsad.stages import (  # noqa: F401 - the array names, re-exported for the tasks
    BOXES, CLASS_TOKEN, COMPONENTS, DINO_TOKENS, EMBEDDINGS, FUSED, MAPS, MUTUAL_SCORES, NEAREST, PATCH_DIMS, PATCHES,
    PIXEL_MAP, STAGES, TOKENS)

STAGE_ARRAYS: dict[str, Mapping[str, tuple[str, ...]]] = {s.name: s.arrays for s in STAGES}


def stage_of(key: str) -> str:
    return key.split("/", 1)[0]


def dims(stage: str, name: str) -> tuple[str, ...]:
    """The dimension names of array ``name`` of ``stage``; a ``ValueError`` naming the stage's
    arrays when it has no such array."""
    arrays = STAGE_ARRAYS.get(stage)
    if arrays is None or name not in arrays:
        known = ", ".join(arrays) if arrays else "none"
        raise ValueError(f"stage {stage!r} has no array {name!r} (its arrays: {known}); "
                         "declare new arrays with the stage in zsad/stages.py")
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
            raise ValueError(f"{key}: array {name!r} has dimensions {want} in zsad/stages.py, got {tuple(given)}")
        out[name] = (data, want)
    return out


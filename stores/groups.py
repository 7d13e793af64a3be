"""Writing a unit's Zarr group through zarr-python (``fill_group``: arrays, then its attributes,
the completeness marker last) and creating a group another process may be creating too
(``despite_races``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import zarr

COMPLETE = "complete"
Arrays = dict[str, tuple[np.ndarray, tuple[str, ...]]]


def despite_races(create):
    """``create()``, retried while another process is creating the same Zarr group this instant
    (two runs starting on one shared store both see it missing; one wins). None if it never settles."""
    for attempt in range(5):
        try:
            return create()
        except zarr.errors.ContainsGroupError:
            time.sleep(0.05 * (attempt + 1))  # the other writer's group is there now: open it
    return None


def fill_group(group: zarr.Group, arrays: Arrays, meta: dict[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` through zarr-python (texts, 4-D or empty arrays), marker last."""
    for aname, (data, dims) in arrays.items():
        data = np.asarray(data)
        if data.ndim != len(dims):
            raise ValueError(f"array {aname}: {data.ndim} dimensions but names {dims}")
        chunks = tuple(max(1, s) for s in data.shape)
        if data.ndim == 4:  # (tile, prompt, y, x): one chunk per tile
            chunks = (1,) + chunks[1:]
        text = data.dtype.kind in "UO"  # texts (e.g. prompts): Zarr's variable-length UTF-8, a coordinate
        group.create_array(aname, shape=data.shape, dtype=str if text else data.dtype, chunks=chunks,
                           dimension_names=dims, fill_value="" if text else 0, overwrite=True)[...] = \
            data.astype(object) if text else data
    group.attrs.update(meta)
    group.attrs[COMPLETE] = True  # last

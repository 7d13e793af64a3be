"""Derived stage ``fused``: per image and fusion method, the (T, h, w) fused CLIPSeg map, with
what aggregation needs of the image (tiles, size, label, mask file) in its attributes.

A re-aggregation reads one such unit per fusion and the image's CLIP embeddings instead of the
image record, the tiles and L per-prompt maps per tile, and never fuses again. The unit is
made by the first aggregation that needs it (or ``zsad precompute --fusions``), written like
every unit (marker last, atomic on a local disk) and keyed by ``StagePlan.fused_hash``: a new
CLIPSeg model, prompt list, map dtype, tiling or image recomputes it; an aggregation change
does not. Its values are rounded to ``fused_dtype`` whether read or just computed, so the first
run and every later one score identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from zsad.stores import StageStore, Unit, unit_key
from zsad.stores.schema import BOXES, COMPONENTS, EMBEDDINGS, FUSED, MAPS
from zsad.aggregate import ImageEvidence
from zsad.datasets import exif_orientation, ground_truth
from zsad.pixelmaps import fuse_stored_maps

from .plan import StagePlan



@dataclass(frozen=True)
class ImageFacts:
    """What aggregation needs of an image's record.

    Attributes:
        sha256: the image file's digest (the source of every unit made from it).
        label: 1 anomalous, 0 normal, -1 unknown; mask_path: its ground-truth file or None.
        image_hw: (H, W); orientation: the file's EXIF orientation (its mask is turned by it).
    """

    sha256: str
    label: int
    mask_path: str | None
    image_hw: tuple[int, int]
    orientation: int = 1

    @classmethod
    def from_attrs(cls, attrs: dict) -> "ImageFacts":
        """From an image record (one written before records held the orientation: read from the file)."""
        orientation = attrs.get("orientation")
        if orientation is None:
            orientation = exif_orientation(attrs["path"]) if attrs.get("path") else 1
        return cls(attrs["sha256"], int(attrs["label"]), attrs.get("mask_path"), (attrs["height"], attrs["width"]),
                   int(orientation))

    def ground_truth(self, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) bool: the image's ground truth on its decoded pixel grid (``size_hw``: resized)."""
        return ground_truth(self.mask_path, size_hw or self.image_hw, self.orientation)


def _facts_attrs(facts: ImageFacts, boxes_xyxy: np.ndarray, component_t: np.ndarray) -> dict:
    return {"sha256": facts.sha256, "label": facts.label, "mask_path": facts.mask_path, "height": facts.image_hw[0],
            "width": facts.image_hw[1], "orientation": facts.orientation, BOXES: np.asarray(boxes_xyxy).tolist(),
            COMPONENTS: np.asarray(component_t).tolist()}


def compute_fused(store: StageStore, plan: StagePlan, unit: Unit, fusions: Iterable[str], facts: ImageFacts
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Fuse an image's cached CLIPSeg maps for ``fusions`` (rounded to ``fused_dtype``); write
    each as a ``fused`` unit unless the store is read-only. Returns (fusion -> map, boxes_xyxy, component_t)."""
    tiles, _ = store.read_complete(unit_key("tiles", plan.hashes["tiles"], unit), (BOXES, COMPONENTS)) \
        or (None, None)
    if tiles is None:
        raise ValueError(f"{store.url}: the tiles of {unit.path} are missing or incomplete; run `zsad precompute`")
    maps = store.read_array(unit_key("clipseg", plan.hashes["clipseg"], unit), MAPS)
    out = {}
    for fusion in fusions:
        out[fusion] = fuse_stored_maps(maps, fusion).astype(plan.fused_dtype)
        if not store.read_only:
            store.ensure_stage("fused", plan.fused_hash(fusion), plan.fused_config(fusion), plan.fused_inputs())
            store.write_unit(unit_key("fused", plan.fused_hash(fusion), unit), {FUSED: out[fusion]},
                             _facts_attrs(facts, tiles[BOXES], tiles[COMPONENTS]), source=facts.sha256)
    return out, tiles[BOXES], tiles[COMPONENTS]


def read_evidence(store: StageStore, plan: StagePlan, unit: Unit, fusions: Iterable[str], facts: ImageFacts
                  ) -> ImageEvidence:
    """An image's ``ImageEvidence`` for ``fusions``: each fused map from its unit (one read)
    or, when missing, computed from the CLIPSeg maps (and written unless the store is read-only); the tile
    embeddings from ``clip_image`` (one read)."""
    fusions = list(dict.fromkeys(fusions))
    fused, boxes, components = {}, None, None
    for fusion in fusions:
        got = store.read_complete(unit_key("fused", plan.fused_hash(fusion), unit), (FUSED,), facts.sha256)
        if got is not None:
            fused[fusion] = got[0][FUSED]
            boxes, components = got[1][BOXES], got[1][COMPONENTS]
    missing = [f for f in fusions if f not in fused]
    if missing:
        made, boxes, components = compute_fused(store, plan, unit, missing, facts)
        fused.update(made)
    emb = store.read_complete(unit_key("clip_image", plan.hashes["clip_image"], unit), (EMBEDDINGS,))
    if emb is None:
        raise ValueError(f"{store.url}: the CLIP embeddings of {unit.path} are missing or incomplete; "
                         "run `zsad precompute`")
    return ImageEvidence(emb[0][EMBEDDINGS], fused, np.asarray(boxes, np.int64).reshape(-1, 4),
                         np.asarray(components, np.int64), facts.image_hw)


def build_fused(store: StageStore, plan: StagePlan, units: Iterable[Unit], fusions: Iterable[str]) -> int:
    """Write the missing ``fused`` units of ``units`` (``zsad precompute --fusions``); how many."""
    fusions, written = list(dict.fromkeys(fusions)), 0
    for unit in units:
        facts = ImageFacts.from_attrs(store.read_attrs(unit_key("image", plan.hashes["image"], unit)))
        missing = [f for f in fusions
                   if not store.is_complete(unit_key("fused", plan.fused_hash(f), unit), facts.sha256)]
        if missing:
            compute_fused(store, plan, unit, missing, facts)
            written += len(missing)
    store.index.flush(("fused",))
    return written

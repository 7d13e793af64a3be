"""Test helper: the arrays a test names become aggregation's typed evidence."""

from __future__ import annotations

import numpy as np

from zsad.aggregate import ImageEvidence, TextEvidence


def evidence(img, text, anomalous, ext, scale, maps, boxes, components, image_hw):
    """(ImageEvidence with every fusion computed, TextEvidence) from plain arrays."""
    image = ImageEvidence.from_maps(emb_td=img, maps_tlhw=np.asarray(maps), boxes_xyxy=boxes, component_t=components,
                                    image_hw=image_hw, fusions=("harmonic", "arithmetic", "geometric"))
    return image, TextEvidence(np.asarray(text), np.asarray(anomalous, bool), np.asarray(ext, bool), scale)

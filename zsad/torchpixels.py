"""The pixel side of a sweep on a torch device (``zsad aggregate/evaluate --device cuda``).

Per distinct map of an image (``ImageSweep.groups``): scale the fused maps by the tile scores,
paste them into covered cells (``zsad.pixelmaps.paste_cells``' arithmetic: one tile's values
as they are, several tiles' float64 mean in tile order), round to float16 and count the bins
(``zsad.metrics.PixelAccumulator.update_cells``' histograms) — all on the device; histograms
come back to the host once per chunk (``to_evaluator``). Tile and sample scores stay on the
host (numpy), bit for bit the CPU path's.

Precision (tests run this module on CPU tensors): counts equal the numpy path's exactly where
no tile is resized, the region weights up to float64 summation order; on a GPU, bilinear resize
of tiles whose box differs from the map size may differ from the CPU's in the last float32 bit,
which moves a pixel at most one float16 bin: metrics within 1e-6 (README figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .aggregate import ImageEvidence, ImageSweep
from .config import AggregateConfig
from .evaluation import ClassEvaluator
from .bins import FLOAT16_BINS, CellTruth
from .metrics import PixelAccumulator
from .pixelmaps import cell_parts, clip_boxes


def _tile(values: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    if tuple(values.shape) == tuple(size_hw):
        return values
    return F.interpolate(values[None, None], size=tuple(size_hw), mode="bilinear", align_corners=False)[0, 0]


def paste_cells_torch(maps_thw: torch.Tensor, boxes_xyxy: np.ndarray, image_hw: tuple[int, int]
                      ) -> list[tuple[tuple[int, int, int, int], torch.Tensor]]:
    """``paste_cells`` on a device: ((y0, y1, x0, x1), float32 values) per covered cell."""
    resized = [_tile(m, (y1 - y0, x1 - x0)) if (y1 > y0 and x1 > x0) else None
               for m, (x0, y0, x1, y1) in zip(maps_thw, clip_boxes(boxes_xyxy, image_hw))]
    cells = []
    for box, parts in cell_parts(resized, boxes_xyxy, image_hw):
        if len(parts) == 1:
            values = parts[0]
        else:
            total = torch.zeros(parts[0].shape, dtype=torch.float64, device=parts[0].device)
            for part in parts:
                total += part
            values = (total / len(parts)).to(torch.float32)
        cells.append((box, values))
    return cells


@dataclass(frozen=True)
class TorchTruth:
    """A ``CellTruth`` on a device."""

    truth: CellTruth
    mask_codes: torch.Tensor | None
    defect_idx: torch.Tensor
    defect_weight: torch.Tensor

    @classmethod
    def of(cls, truth: CellTruth, device: torch.device) -> "TorchTruth":
        codes = None if truth.mask_codes is None else torch.as_tensor(truth.mask_codes.astype(np.int64), device=device)
        return cls(truth, codes, torch.as_tensor(truth.defect_idx.astype(np.int64), device=device),
                   torch.as_tensor(truth.defect_weight, dtype=torch.float64, device=device))


def _bins(values: torch.Tensor) -> torch.Tensor:
    """``float16_bins`` on a device: int64 bins, negatives as 0, NaN refused."""
    bits = values.to(torch.float16).view(torch.int16).to(torch.int64) & 0xFFFF
    if bool(((bits & 0x7FFF) > 0x7C00).any()):
        raise ValueError("anomaly maps contain NaN")
    return torch.where(bits >= 0x8000, torch.zeros_like(bits), bits)


class TorchPixels:
    """``ClassEvaluator``'s pixel side accumulated on a device."""

    def __init__(self, device: torch.device):
        z = lambda dtype: torch.zeros(FLOAT16_BINS, dtype=dtype, device=device)  # noqa: E731
        self.pos, self.neg, self.normal = z(torch.int64), z(torch.int64), z(torch.int64)
        self.region = z(torch.float64)
        self.n_regions = 0
        self.seen = False
        self.normal_seen = False

    def add(self, label: int, truth: TorchTruth, cells: Sequence[tuple[tuple, torch.Tensor]]) -> None:
        t = truth.truth
        flat = torch.cat([v.reshape(-1) for _, v in cells]) if cells else torch.zeros(0, device=self.pos.device)
        bits = _bins(flat)
        if truth.mask_codes is None:
            neg, pos = torch.bincount(bits, minlength=FLOAT16_BINS), None
        else:
            both = torch.bincount(bits + truth.mask_codes, minlength=2 * FLOAT16_BINS)
            neg, pos = both[:FLOAT16_BINS].clone(), both[FLOAT16_BINS:].clone()
        neg[0] += t.neg_out
        self.neg += neg
        self.seen = True
        if pos is None and t.pos_out:
            pos = torch.zeros_like(neg)
        if pos is not None:
            pos[0] += t.pos_out
            self.pos += pos
            region = torch.zeros(FLOAT16_BINS, dtype=torch.float64, device=bits.device)
            region.index_add_(0, bits[truth.defect_idx], truth.defect_weight)
            region[0] += t.weight_out
            self.region += region
            self.n_regions += t.n_regions
        if label == 0:
            self.normal += neg + (pos if pos is not None else 0)
            self.normal_seen = True

    def to_evaluator(self, pixel_size: int | None = None) -> ClassEvaluator:
        """The host-side ``ClassEvaluator`` holding these pixels (no labels or scores)."""
        acc = PixelAccumulator()
        acc.pos, acc.neg = self.pos.cpu().numpy(), self.neg.cpu().numpy()
        acc.region_weight, acc.n_regions = self.region.cpu().numpy(), self.n_regions
        return ClassEvaluator(pixel_size, pixels=acc if self.seen else None,
                              normal_pixels=self.normal.cpu().numpy() if self.normal_seen else None)


def sweep_cells(evidence: ImageEvidence, sweep: ImageSweep, cfgs: Sequence[AggregateConfig],
                device: torch.device) -> list[list[tuple[tuple, torch.Tensor]]]:
    """Each map group's covered cells on ``device`` (zero-shot variants; ``sweep_image`` ran
    with ``pixels=False``): the fused map of the group's fusion, times its tile scores when scaled."""
    fused: dict[str, torch.Tensor] = {}
    out = []
    for group in sweep.groups:
        first = group.members[0]
        cfg = cfgs[first]
        if not cfg.detector.device_pixels:
            raise ValueError(f"--device {device}: the pixel maps of {cfg.mode} variants are computed on the CPU; "
                             "aggregate them with --device cpu")
        if cfg.fusion not in fused:
            fused[cfg.fusion] = torch.as_tensor(np.asarray(evidence.fused_thw[cfg.fusion], np.float32), device=device)
        maps = fused[cfg.fusion]
        if cfg.scale_by_tile_score:
            s = torch.as_tensor(sweep.tile_scores[first].astype(np.float32), device=device)
            maps = maps * s[:, None, None]
        out.append(paste_cells_torch(maps, evidence.boxes_xyxy, evidence.image_hw))
    return out

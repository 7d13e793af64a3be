"""zsad's automatic mask generator on segment-anything's own modules and weights.

It runs the operations of ``SamAutomaticMaskGenerator.generate`` for one crop (zsad uses no
crop layers) in the same order, and gives the same masks, scores and boxes. Each step is
mirrored from segment-anything's ``automatic_mask_generator.py``:

1. ``SamPredictor.set_image`` (the same resize, normalisation and image encoder);
2. the grid ``build_point_grid(points_per_side) * (W, H)``, in batches of ``points_per_batch``,
   each through the prompt encoder and mask decoder exactly as ``SamPredictor.predict_torch``;
3. the predicted-IoU filter (``> pred_iou_thresh`` when above 0) on the low-resolution
   logits; stock upsamples every candidate first. The filter reads only the scores, and
   bilinear upsampling treats each mask on its own, so the survivors are the same;
4. upsampling of the survivors only (``Sam.postprocess_masks``, in chunks), the stability score
   (``calculate_stability_score``, ``>= stability_score_thresh`` when above 0), binarisation
   at ``mask_threshold`` and ``batched_mask_to_box``. With one crop covering the image,
   stock's crop-edge filter keeps everything, so it is not run;
5. ``batched_nms`` on the inclusive boxes and the predicted IoU over all batches, on the
   device, as stock;
6. masks sorted by decreasing area (stable: ties keep NMS order, as ``SamSegmenter`` sorts
   stock's records) and copied to the host once. Stock encodes each surviving mask to RLE on
   the host and decodes it again.

Memory is bounded by the image's pixels: survivors are upsampled ``upsample_chunk(H, W)`` at
a time (at most ``UPSAMPLE_VALUES`` float logits in flight) and bit-packed on the device as
soon as each chunk is binarised (areas and boxes are taken from the chunk first), so no more
than one chunk of full-resolution masks is ever unpacked. Chunking and packing are exact:
each mask is upsampled, thresholded, counted and packed on its own. From ``TRIM_PIXELS`` on,
the freed heap is given back after each chunk (``release_freed_memory``: the packed results
kept between chunks would otherwise pin the freed full-resolution temporaries).

What is not stock: no run-length encoding, no per-record dicts, no ``point_coords`` or
``stability_score`` in the output (zsad stores neither). ``min_mask_region_area > 0`` needs
segment-anything's OpenCV post-processing: ``SamSegmenter`` hands that case to the stock
generator.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from torchvision.ops.boxes import batched_nms

from ..bitmasks import pack_masks_torch
from ..config import SamGeneratorConfig
from ._common import release_freed_memory
from .sam_masks import SamMasks

STABILITY_OFFSET = 1.0  # SamAutomaticMaskGenerator's stability_score_offset default
UPSAMPLE_CHUNK = 64  # at most this many masks upsampled to full resolution at a time
UPSAMPLE_VALUES = 2 ** 24  # and at most this many float logits (64 MiB) in flight: the bound on large images
TRIM_PIXELS = 2 ** 22  # from 4.2 MP on, freed heap pages go back to the system after each chunk
BYTES_PER_POINT = 32 * 2 ** 20  # the fp32 decoder's peak per point prompt: 28 MB stock, 21 MB shared (CPU max RSS)


@dataclass(frozen=True)
class Candidates:
    """One point batch's surviving masks, on the device.

    Attributes:
        masks_packed: (N, ceil(H*W/8)) uint8, the full-resolution masks bit-packed (``zsad.bitmasks``).
        area_n: (N,) int64 pixels of each mask.
        iou_n: (N,) float32 predicted IoU.
        boxes_inclusive: (N, 4) int64 ``x0, y0, x1, y1`` with inclusive ends (``batched_mask_to_box``).
    """

    masks_packed: torch.Tensor
    area_n: torch.Tensor
    iou_n: torch.Tensor
    boxes_inclusive: torch.Tensor


def upsample_chunk(height: int, width: int) -> int:
    """Masks upsampled at a time for an image of ``height x width`` pixels: ``UPSAMPLE_CHUNK``,
    fewer where that many would pass ``UPSAMPLE_VALUES`` logits, at least one.

    Example (64 up to 0.26 MP, 21 at 1024 x 768, 4 at 4 MP, 1 from 16.8 MP on):
        >>> upsample_chunk(512, 512), upsample_chunk(768, 1024), upsample_chunk(2000, 2000), upsample_chunk(5000, 5000)
        (64, 21, 4, 1)
    """
    return max(1, min(UPSAMPLE_CHUNK, UPSAMPLE_VALUES // max(1, height * width)))


def auto_points_per_batch(device: str, n_points: int) -> int:
    """Point prompts per decoder batch from free device memory: half of what is free over
    ``BYTES_PER_POINT``, a multiple of 64 between 64 and the grid (rounded up to 64). A CPU
    gets stock's 64."""
    if not str(device).startswith("cuda"):
        return min(64, n_points)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    fit = int(free // 2 // BYTES_PER_POINT) // 64 * 64
    return max(64, min(fit, -(-n_points // 64) * 64))


def upsample_logits(low_nhw: torch.Tensor, img_size: int, input_hw: tuple[int, int],
                    original_hw: tuple[int, int]) -> torch.Tensor:
    """``Sam.postprocess_masks`` of (N, h, w) low-resolution logits -> (N, H, W), computing only
    what it keeps.

    Its first bilinear upsampling to ``img_size`` square is cropped to ``input_hw``, so only the
    low-resolution rows those pixels read (plus one) are upsampled, by the same scale (source
    index ``(i + 0.5) * h / img_size - 0.5``, the same weights). Rows only: each output row is
    computed on its own, while columns are the kernel's vector loop, whose tail may round
    differently. The second upsampling, to ``original_hw``, is an identity when the sizes are
    equal (source index ``i``, weight 0) and is skipped then.

    Example (a 1024x768 image: 193 of 256 rows are upsampled, no second pass):
        >>> low = torch.randn(2, 256, 256)
        >>> ref = Sam.postprocess_masks(type("M", (), {"image_encoder": type("E", (), {"img_size": 1024})})(),
        ...                             low[:, None], (768, 1024), (768, 1024))[:, 0]
        >>> bool(torch.equal(upsample_logits(low, 1024, (768, 1024), (768, 1024)), ref))
        True
    """
    h = low_nhw.shape[-2]
    factor = img_size // h
    rows = min(h, -(-input_hw[0] // factor) + 1)
    up = F.interpolate(low_nhw[:, None, :rows], scale_factor=factor, mode="bilinear", align_corners=False)
    up = up[..., :input_hw[0], :input_hw[1]]
    if tuple(input_hw) != tuple(original_hw):
        up = F.interpolate(up, tuple(original_hw), mode="bilinear", align_corners=False)
    return up[:, 0]


class ZsadMaskGenerator:
    """Automatic masks of one image, equal to ``SamAutomaticMaskGenerator``'s (see the module)."""

    def __init__(self, sam: Sam, cfg: SamGeneratorConfig, device: str = "cpu", decoder=None):
        self.cfg = cfg
        self.device = device
        self.predictor = SamPredictor(sam)
        self.decoder = sam.mask_decoder if decoder is None else decoder
        self.grid_xy = build_point_grid(cfg.points_per_side)

    def _autocast(self):
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    @torch.inference_mode()
    def generate(self, image_hw3: np.ndarray) -> SamMasks:
        """(H, W, 3) uint8 RGB -> its masks on the host, sorted by decreasing area."""
        h, w = image_hw3.shape[:2]
        with self._autocast():
            self.predictor.set_image(image_hw3)
        points = self.grid_xy * np.array((w, h))[None, :]
        per = self.cfg.points_per_batch or auto_points_per_batch(self.device, len(points))
        parts = [self._batch(points[i:i + per], (h, w)) for i in range(0, len(points), per)]
        self.predictor.reset_image()
        iou = torch.cat([p.iou_n for p in parts])
        boxes = torch.cat([p.boxes_inclusive for p in parts])
        keep = batched_nms(boxes.float(), iou, torch.zeros(len(boxes), device=boxes.device),
                           iou_threshold=self.cfg.box_nms_thresh)
        areas = torch.cat([p.area_n for p in parts])
        order = keep[torch.sort(-areas[keep], stable=True).indices]
        packed = torch.cat([p.masks_packed for p in parts])[order]
        iou, boxes, area = iou[order], boxes[order], areas[order]
        ends = torch.tensor((0, 0, 1, 1), dtype=boxes.dtype, device=boxes.device)
        exclusive = torch.where(area[:, None] > 0, boxes + ends, torch.zeros_like(boxes))
        return SamMasks(masks_packed=packed.cpu().numpy(), scores_n=iou.float().cpu().numpy(),
                        boxes_xyxy=exclusive.to(torch.int32).cpu().numpy(), height=h, width=w)

    def _batch(self, points_xy: np.ndarray, size_hw: tuple[int, int]) -> Candidates:
        """One point batch: decoder, IoU filter, survivors upsampled, stability, boxes."""
        p, cfg = self.predictor, self.cfg
        coords = torch.as_tensor(p.transform.apply_coords(points_xy, size_hw), device=p.device)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=p.device)
        with self._autocast():
            sparse, dense = p.model.prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
            low, iou = self.decoder(image_embeddings=p.features, image_pe=p.model.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                    multimask_output=True)
        low, iou = low.flatten(0, 1).float(), iou.flatten(0, 1).float()
        if cfg.pred_iou_thresh > 0.0:
            keep = iou > cfg.pred_iou_thresh
            low, iou = low[keep], iou[keep]
        h, w = size_hw
        step = upsample_chunk(h, w)
        found = [self._chunk(low[i:i + step], iou[i:i + step]) for i in range(0, low.shape[0], step)]
        found = found or [self._chunk(low[:0], iou[:0])]
        return Candidates(*(torch.cat([c[k] for c in found]) for k in range(4)))

    def _chunk(self, low_nhw: torch.Tensor, iou_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Survivors upsampled, stability-filtered, binarised: (packed masks, areas, IoUs, inclusive boxes)."""
        p, cfg = self.predictor, self.cfg
        full = upsample_logits(low_nhw, p.model.image_encoder.img_size, p.input_size, p.original_size)
        stable = calculate_stability_score(full, p.model.mask_threshold, STABILITY_OFFSET)
        keep = stable >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0.0 else \
            torch.ones_like(stable, dtype=torch.bool)
        masks_nhw = full[keep] > p.model.mask_threshold
        del full, stable
        out = (pack_masks_torch(masks_nhw), masks_nhw.flatten(1).sum(1), iou_n[keep],
               batched_mask_to_box(masks_nhw).long())
        if masks_nhw.shape[1] * masks_nhw.shape[2] >= TRIM_PIXELS:
            del masks_nhw
            release_freed_memory()
        return out

"""SAM via segment-anything: ``sam_model_registry`` architectures plus a tiny one, and the
automatic mask generator with its published defaults."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..bitmasks import pack_masks
from ..config import ModelSpec, SamGeneratorConfig
from ..weights import load_checked, safe_load_state_dict
from ._common import check_image, seeded
from .sam_amg import ZsadMaskGenerator
from .sam_masks import SamMasks
from .sam_decoder import SharedImageSideDecoder

# encoder dim, depth, heads, global attention blocks, image size, prompt dim, window
SAM_ARCHS: dict[str, tuple] = {
    "vit_h": (1280, 32, 16, (7, 15, 23, 31), 1024, 256, 14),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23), 1024, 256, 14),
    "vit_b": (768, 12, 12, (2, 5, 8, 11), 1024, 256, 14),
    "tiny": (32, 2, 2, (1,), 128, 32, 4),
}


def make_sam(arch: str) -> Sam:
    """A ``Sam`` module with segment-anything's own classes (state-dict keys as published)."""
    if arch not in SAM_ARCHS:
        raise ValueError(f"unknown SAM architecture {arch!r}; known: {sorted(SAM_ARCHS)}")
    dim, depth, heads, global_idx, size, prompt_dim, window = SAM_ARCHS[arch]
    grid = size // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=dim, img_size=size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=16, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=global_idx, window_size=window, out_chans=prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(size, size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=max(64, 8 * prompt_dim),
                                          num_heads=8 if prompt_dim >= 256 else 2),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=prompt_dim),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


class SamSegmenter:
    """SAM automatic mask generation for whole images: zsad's generator (``sam_amg``) or
    segment-anything's, as ``SamGeneratorConfig.engine`` says (the stock one also where
    ``min_mask_region_area > 0`` needs its OpenCV post-processing)."""

    def __init__(self, sam: Sam, generator: SamGeneratorConfig = SamGeneratorConfig(), device: str = "cpu"):
        self.sam = sam.eval().to(device)
        self.config = generator
        self.stock = SamAutomaticMaskGenerator(
            sam, points_per_side=generator.points_per_side, points_per_batch=generator.points_per_batch or 64,
            pred_iou_thresh=generator.pred_iou_thresh, stability_score_thresh=generator.stability_score_thresh,
            box_nms_thresh=generator.box_nms_thresh, min_mask_region_area=generator.min_mask_region_area)
        self.zsad = None
        if generator.engine == "zsad" and generator.min_mask_region_area == 0:
            self.zsad = ZsadMaskGenerator(sam, generator, device, decoder=_decoder(sam, generator))
            if generator.compile:
                sam.image_encoder = torch.compile(sam.image_encoder)
        self.weights_sha256 = "random"

    @torch.inference_mode()
    def generate(self, image_hw3: np.ndarray) -> SamMasks:
        """(H, W, 3) uint8 RGB -> masks sorted by decreasing area."""
        check_image(image_hw3)
        if self.zsad is not None:
            return self.zsad.generate(image_hw3)
        return self.generate_stock(image_hw3)

    @torch.inference_mode()
    def generate_stock(self, image_hw3: np.ndarray) -> SamMasks:
        """segment-anything's ``SamAutomaticMaskGenerator``, records sorted by decreasing area."""
        h, w = check_image(image_hw3).shape[:2]
        records = sorted(self.stock.generate(image_hw3), key=lambda r: -r["area"])
        if not records:
            return SamMasks(np.zeros((0, (h * w + 7) // 8), np.uint8), np.zeros(0, np.float32),
                            np.zeros((0, 4), np.int32), h, w)
        masks = np.stack([r["segmentation"] for r in records]).astype(bool)
        return SamMasks(pack_masks(masks), np.array([r["predicted_iou"] for r in records], np.float32),
                        mask_boxes(masks), h, w)


def _decoder(sam: Sam, cfg: SamGeneratorConfig):
    """The mask decoder the zsad generator calls: SAM's own, or the one sharing the image side."""
    decoder = SharedImageSideDecoder(sam.mask_decoder) if cfg.share_image_side else sam.mask_decoder
    return torch.compile(decoder) if cfg.compile else decoder


def mask_boxes(masks_nhw: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) int32 ``x0, y0, x1, y1`` extents with exclusive ends; an empty
    mask gets (0, 0, 0, 0). (segment-anything's ``bbox`` is XYWH with ``w = x_max - x_min``, so
    ``x + w`` is the last column, not one past it.)

    Example:
        >>> m = np.zeros((1, 3, 4), bool); m[0, 1, 2] = True
        >>> mask_boxes(m).tolist()
        [[2, 1, 3, 2]]
    """
    out = np.zeros((len(masks_nhw), 4), np.int32)
    for i, mask in enumerate(masks_nhw):
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        if cols.size:
            out[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return out


def build_sam(spec: ModelSpec, weights_path: Path | None = None, device: str = "cpu",
              generator: SamGeneratorConfig = SamGeneratorConfig()) -> SamSegmenter:
    """Build SAM for ``spec.arch``; random weights when ``weights_path`` is None."""
    with seeded(0):
        sam = make_sam(spec.arch)
    if weights_path is not None:
        load_checked(sam, safe_load_state_dict(Path(weights_path)), Path(weights_path))
    return SamSegmenter(sam, generator, device)

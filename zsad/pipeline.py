"""One call that scores an image: every stage of the seed method in order.

The Prefect flows split exactly these steps into cached stages; ``aggregate_image`` is shared,
and maps go through the same storage dtype, so the cached path reproduces this one exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .aggregate import Aggregated, ImageEvidence, TextEvidence, aggregate_image
from .config import PipelineConfig
from .foreground import Foreground, extract_foreground
from .models import load_model
from .models._common import check_image
from .pixelmaps import store_maps
from .prompts import PromptSet, build_prompt_set, localising_prompts, object_name_for
from .tiling import Tiles, crop_tiles, tile_image


@dataclass
class Models:
    """The four networks, loaded once and reused for many images."""

    clip: Any
    clipseg: Any
    sam: Any
    isnet: Any

    @classmethod
    def load(cls, cfg: PipelineConfig) -> "Models":
        return cls(
            clip=load_model(cfg.clip, device=cfg.device, batch_size=cfg.batch_size, precision=cfg.precision),
            clipseg=load_model(cfg.clipseg, device=cfg.device, batch_size=cfg.batch_size, precision=cfg.precision),
            sam=load_model(cfg.sam, device=cfg.device, generator=cfg.sam_generator),
            isnet=load_model(cfg.isnet, device=cfg.device),
        )


@dataclass
class TextEmbeddings:
    """CLIP prompt embeddings of one class, shared by all its images."""

    prompts: PromptSet
    emb_pd: np.ndarray
    logit_scale: float

    def evidence(self) -> TextEvidence:
        """What aggregation reads of them."""
        return TextEvidence(self.emb_pd, self.prompts.anomalous_p, self.prompts.seed_extension_p, self.logit_scale)


def class_object_name(class_name: str, cfg: PipelineConfig) -> str:
    return cfg.prompts.object_name or object_name_for(class_name)


def embed_prompts(clip: Any, class_name: str, cfg: PipelineConfig) -> TextEmbeddings:
    prompts = build_prompt_set(class_object_name(class_name, cfg))
    return TextEmbeddings(prompts, clip.encode_texts(prompts.texts), clip.logit_scale)


@dataclass
class ImageResult:
    """Everything computed for one image."""

    sample_score: float
    pixel_map_hw: np.ndarray
    tile_scores_t: np.ndarray
    tiles: Tiles
    foreground: Foreground
    isnet_u8_hw: np.ndarray
    n_sam_masks: int
    clipseg_maps_tlhw: np.ndarray
    tile_emb_td: np.ndarray


def score_image(image_hw3: np.ndarray, class_name: str, models: Models, cfg: PipelineConfig,
                text: TextEmbeddings | None = None) -> ImageResult:
    """Score one (H, W, 3) uint8 RGB image of ``class_name``.

    Pass ``text`` (from ``embed_prompts``) to reuse the class's prompt embeddings.
    """
    check_image(image_hw3)
    isnet_map = models.isnet.predict(image_hw3)
    sam = models.sam.generate(image_hw3)
    fg = extract_foreground(sam.masks_nhw, isnet_map, cfg.foreground)
    tiles = tile_image(fg.labels_hw, fg.parts_c, cfg.tiling)
    crops = crop_tiles(image_hw3, tiles.boxes_xyxy)
    emb = models.clip.encode_images(crops)
    text = text or embed_prompts(models.clip, class_name, cfg)
    maps = store_maps(models.clipseg.predict_logits(crops, localising_prompts(cfg.prompts.localising)), cfg.map_dtype)
    evidence = ImageEvidence.from_maps(emb_td=emb, maps_tlhw=maps, fusions=[cfg.aggregate.fusion],
                                       boxes_xyxy=tiles.boxes_xyxy, component_t=tiles.component_t,
                                       image_hw=image_hw3.shape[:2], fused_dtype=cfg.fused_dtype)
    agg: Aggregated = aggregate_image(evidence, text.evidence(), cfg.aggregate)
    return ImageResult(agg.sample_score, agg.pixel_map_hw, agg.tile_scores_t, tiles, fg, isnet_map,
                       int(sam.masks_nhw.shape[0]), maps, emb)

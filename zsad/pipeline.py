"""One call that scores an image (``score_image``) or a class's batch in any mode
(``score_images``): every stage of the method in order.

The Prefect flows split exactly these steps into cached stages; aggregation is shared, and maps
and patch features go through the same storage dtypes, so the cached path reproduces this one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .aggregate import ImageEvidence, TextEvidence, aggregate_variants
from .config import PipelineConfig
from .foreground import Foreground, extract_foreground_packed
from .models import load_model
from .models._common import check_image
from .pixelmaps import store_maps
from .prompts import PromptSet, build_prompt_set, localising_prompts, object_name_for
from .shots import check_no_leak, draw_shots
from .tiling import Tiles, crop_tiles, tile_image
from .variants import FewShot


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
    patch_scores_tyx: np.ndarray | None = None  # few-shot / mutual: the patch evidence used


@dataclass(frozen=True)
class _Evidence:
    """One image's model outputs, before aggregation."""

    isnet_u8_hw: np.ndarray
    n_sam_masks: int
    foreground: Foreground
    tiles: Tiles
    evidence: ImageEvidence
    maps_tlhw: np.ndarray
    emb_td: np.ndarray
    patches_tlyxc: np.ndarray | None


def _image_evidence(image_hw3: np.ndarray, models: Models, cfg: PipelineConfig, patches: bool) -> _Evidence:
    check_image(image_hw3)
    isnet_map = models.isnet.predict(image_hw3)
    sam = models.sam.generate(image_hw3)
    fg = extract_foreground_packed(sam.masks_packed, isnet_map, cfg.foreground)
    tiles = tile_image(fg.labels_hw, fg.parts_c, cfg.tiling)
    crops = crop_tiles(image_hw3, tiles.boxes_xyxy)
    if patches:
        emb, feats = models.clip.encode_images_and_patches(crops, cfg.patch_layers)
    else:
        emb, feats = models.clip.encode_images(crops), None
    maps = store_maps(models.clipseg.predict_logits(crops, localising_prompts(cfg.prompts.localising)), cfg.map_dtype)
    evidence = ImageEvidence.from_maps(emb_td=emb, maps_tlhw=maps, fusions=[cfg.aggregate.fusion],
                                       boxes_xyxy=tiles.boxes_xyxy, component_t=tiles.component_t,
                                       image_hw=image_hw3.shape[:2], fused_dtype=cfg.fused_dtype)
    return _Evidence(isnet_map, int(sam.masks_packed.shape[0]), fg, tiles, evidence, maps, emb, feats)


def _result(e: _Evidence, text: TextEmbeddings, cfg: PipelineConfig, patch_tyx: np.ndarray | None) -> ImageResult:
    agg = aggregate_variants(e.evidence, text.evidence(), [cfg.aggregate], patch_tyx=[patch_tyx])[0]
    return ImageResult(agg.sample_score, agg.pixel_map_hw, agg.tile_scores_t, e.tiles, e.foreground, e.isnet_u8_hw,
                       e.n_sam_masks, e.maps_tlhw, e.emb_td, patch_tyx)


def score_image(image_hw3: np.ndarray, class_name: str, models: Models, cfg: PipelineConfig,
                text: TextEmbeddings | None = None) -> ImageResult:
    """Score one (H, W, 3) uint8 RGB image of ``class_name`` zero-shot (``cfg.aggregate`` must be
    a zero-shot variant; ``score_images`` scores the other modes).

    Pass ``text`` (from ``embed_prompts``) to reuse the class's prompt embeddings.
    """
    if cfg.aggregate.patch is not None:
        raise ValueError(f"score_image scores zero-shot; a {cfg.aggregate.mode} variant compares images: use "
                         "score_images(images, class_name, models, cfg, references=...)")
    text = text or embed_prompts(models.clip, class_name, cfg)
    return _result(_image_evidence(image_hw3, models, cfg, False), text, cfg, None)


def score_images(images_hw3: Sequence[np.ndarray], class_name: str, models: Models, cfg: PipelineConfig, *,
                 references: Sequence[np.ndarray] = (), text: TextEmbeddings | None = None) -> list[ImageResult]:
    """Score a batch of (H, W, 3) uint8 images of one class in ``cfg.aggregate``'s mode.

    - zero-shot: each image alone (``score_image``);
    - few-shot: each image against ``patch.shots`` of ``references`` (the class's normal images,
      drawn with ``patch.shot_seed``; 0 shots = all), refused when a reference is also scored;
    - mutual: each image against the others of the batch (at least 2).
    """
    from .patches import few_shot_scores, mutual_scores  # torch-based: only the patch modes
    patch = cfg.aggregate.patch
    if isinstance(patch, FewShot):
        _no_leak(images_hw3, references, class_name)
    text = text or embed_prompts(models.clip, class_name, cfg)
    found = [_image_evidence(im, models, cfg, patch is not None) for im in images_hw3]
    if patch is None:
        return [_result(e, text, cfg, None) for e in found]
    if isinstance(patch, FewShot):
        refs = draw_shots(list(references), patch.shots, patch.shot_seed, class_name=class_name, source="references")
        memory = np.concatenate([_image_evidence(r, models, cfg, True).patches_tlyxc for r in refs])
        scores = [few_shot_scores(e.patches_tlyxc, memory, patch.neighbourhood) for e in found]
    else:
        if len(found) < 2:
            raise ValueError(f"mutual mode, class {class_name!r}: needs at least 2 images to compare, got {len(found)}")
        feats = {str(i): e.patches_tlyxc for i, e in enumerate(found)}
        by_id = mutual_scores(feats, [list(feats.items())], patch.mutual_fraction, patch.neighbourhood)
        scores = [by_id[str(i)] for i in range(len(found))]
    return [_result(e, text, cfg, s) for e, s in zip(found, scores)]


def _no_leak(images: Sequence[np.ndarray], references: Sequence[np.ndarray], class_name: str) -> None:
    def records(arrays, kind):
        return {f"{kind}{i}": (hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(), f"{kind} image {i}")
                for i, a in enumerate(arrays)}
    check_no_leak(records(references, "reference"), records(images, "test"), class_name)

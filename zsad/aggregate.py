"""Sample score and the whole cheap aggregation of one image (seed, "Prediction aggregation")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import AggregateConfig
from .patches import combine_maps
from .pixelmaps import fuse_stored_maps, paste_tiles
from .scoring import tile_scores


def top_fraction_count(n: int, fraction: float) -> int:
    """How many of ``n`` components make the top ``fraction``: ``max(1, ceil(fraction * n))``.

    Example:
        >>> [top_fraction_count(n, 0.25) for n in (1, 3, 4, 9)]
        [1, 1, 1, 3]
    """
    if n <= 0:
        raise ValueError(f"need at least one component, got {n}")
    return max(1, math.ceil(fraction * n - 1e-9))


def component_means(tile_scores_t: np.ndarray, component_t: np.ndarray) -> np.ndarray:
    """Mean tile score per component, in increasing component id order: (T,) -> (C,)."""
    ids, inverse = np.unique(component_t, return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(tile_scores_t, np.float64), minlength=ids.size)
    return sums / np.bincount(inverse, minlength=ids.size)


def sample_score(tile_scores_t: np.ndarray, component_t: np.ndarray, fraction: float = 0.25) -> float:
    """Seed step 6: mean tile score per component, then the mean of the top ``fraction``.

    Example:
        >>> sample_score(np.array([0.2, 0.4, 0.9, 0.1]), np.array([1, 1, 2, 3]), 0.25)  # means .3 .9 .1
        0.9
    """
    means = np.sort(component_means(tile_scores_t, component_t))[::-1]
    return float(means[: top_fraction_count(means.size, fraction)].mean())


@dataclass(frozen=True)
class Aggregated:
    """Outputs of aggregation for one image.

    Attributes:
        tile_scores_t: (T,) float64 anomalous probability per tile.
        pixel_map_hw: (H, W) float32 anomaly map.
        sample_score: float in [0, 1].
    """

    tile_scores_t: np.ndarray
    pixel_map_hw: np.ndarray
    sample_score: float


def aggregate_variants(image_emb_td: np.ndarray, text_emb_pd: np.ndarray, anomalous_p: np.ndarray,
                       seed_extension_p: np.ndarray, logit_scale: float, maps_tlhw: np.ndarray,
                       boxes_xyxy: np.ndarray, component_t: np.ndarray, image_hw: tuple[int, int],
                       cfgs: list[AggregateConfig], patch_tyx: list[np.ndarray | None] | None = None
                       ) -> list[Aggregated]:
    """Everything after the models, for several variants of one image at once.

    Fusion is computed once per fusion method and tile scores once per prompt set, so a grid
    of variants costs little more than its distinct fusions. The one-call scorer and the
    cached ``aggregate`` flow both come here, so they agree exactly.

    Args:
        image_emb_td: (T, D) CLIP tile embeddings.
        text_emb_pd: (P, D) CLIP prompt embeddings; ``anomalous_p``/``seed_extension_p`` (P,) bool.
        logit_scale: CLIP's logit scale (a variant's own ``logit_scale`` replaces it).
        maps_tlhw: (T, L, h, w) CLIPSeg maps as cached (``store_maps``: logit8 uint8, or float
            probabilities).
        boxes_xyxy: (T, 4) tile boxes; component_t: (T,) component ids.
        image_hw: (H, W) of the image.
        cfgs: the variants (fusion, top fraction, scaling, prompt set, mode).
        patch_tyx: per variant, its (T, gy, gx) patch scores (``zsad.patches``) when its mode is
            few-shot or mutual, else None. Such a variant's map and sample score combine the
            zero-shot ones with the pasted patch map (``combine_maps``); tile scores stay zero-shot.
    """
    patch_tyx = patch_tyx if patch_tyx is not None else [None] * len(cfgs)
    anomalous_p, ext_p = np.asarray(anomalous_p, bool), np.asarray(seed_extension_p, bool)
    scores: dict[tuple, np.ndarray] = {}
    fused: dict[str, np.ndarray] = {}
    out = []
    for cfg, patches in zip(cfgs, patch_tyx):
        key = (cfg.seed_states, cfg.logit_scale)
        if key not in scores:
            use = np.ones(len(anomalous_p), bool) if cfg.seed_states else ~ext_p
            scale = logit_scale if cfg.logit_scale is None else cfg.logit_scale
            scores[key] = tile_scores(image_emb_td, text_emb_pd[use], anomalous_p[use], scale)
        if cfg.fusion not in fused:
            fused[cfg.fusion] = fuse_stored_maps(maps_tlhw, cfg.fusion)
        s = scores[key]
        maps = fused[cfg.fusion] * s.astype(np.float32)[:, None, None] if cfg.scale_by_tile_score \
            else fused[cfg.fusion]
        pixel, score = paste_tiles(maps, boxes_xyxy, image_hw), sample_score(s, component_t, cfg.top_fraction)
        if cfg.mode != "zero-shot":
            if patches is None:
                raise ValueError(f"a {cfg.mode} variant needs its (T, gy, gx) patch scores; none were given")
            pixel, score = combine_maps(pixel, paste_tiles(patches, boxes_xyxy, image_hw), score, cfg.combine)
        out.append(Aggregated(s, pixel, score))
    return out


def aggregate_image(image_emb_td: np.ndarray, text_emb_pd: np.ndarray, anomalous_p: np.ndarray,
                    seed_extension_p: np.ndarray, logit_scale: float, maps_tlhw: np.ndarray,
                    boxes_xyxy: np.ndarray, component_t: np.ndarray, image_hw: tuple[int, int],
                    cfg: AggregateConfig) -> Aggregated:
    """``aggregate_variants`` for a single variant."""
    return aggregate_variants(image_emb_td, text_emb_pd, anomalous_p, seed_extension_p, logit_scale, maps_tlhw,
                              boxes_xyxy, component_t, image_hw, [cfg])[0]

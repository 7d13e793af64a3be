"""Sample score and the whole cheap aggregation of one image (seed, "Prediction aggregation")."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .config import AggregateConfig
from .pixelmaps import PastedMap, fuse_stored_maps, paste_cells
from .scoring import check_prompt_labels, contrast_scores, prompt_contrast, unit_rows


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
    """Mean tile score per component, in increasing component id order: (T,) -> (C,). (``bincount``
    adds the tiles in index order, one at a time: the same sums on any CPU.)"""
    ids, inverse = np.unique(component_t, return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(tile_scores_t, np.float64), minlength=ids.size)
    return sums / np.bincount(inverse, minlength=ids.size)


def sample_score(tile_scores_t: np.ndarray, component_t: np.ndarray, fraction: float = 0.25) -> float:
    """Seed step 6: mean tile score per component, then the mean of the top ``fraction``.

    Example:
        >>> sample_score(np.array([0.2, 0.4, 0.9, 0.1]), np.array([1, 1, 2, 3]), 0.25)  # means .3 .9 .1
        0.9
    """
    return top_mean(np.sort(component_means(tile_scores_t, component_t))[::-1], fraction)


def top_mean(means_desc: np.ndarray, fraction: float) -> float:
    """Mean of the top ``fraction`` of component means sorted highest first (``sample_score``'s
    last step; a sweep sorts each prompt set's means once for all its top fractions)."""
    top = means_desc[: top_fraction_count(means_desc.size, fraction)]
    return math.fsum(top.tolist()) / top.size


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


@dataclass(frozen=True)
class TextEvidence:
    """A class's prompt embeddings (the ``clip_text`` stage), shared by all its images.

    Attributes:
        emb_pd: (P, D) prompt embeddings; anomalous_p, seed_extension_p: (P,) bool.
        logit_scale: CLIP's own logit scale (a variant's ``logit_scale`` replaces it).
    """

    emb_pd: np.ndarray
    anomalous_p: np.ndarray
    seed_extension_p: np.ndarray
    logit_scale: float

    @functools.cached_property
    def _contrast(self) -> dict[bool, np.ndarray]:
        """Per prompt set (seed_states): its (D,) ``prompt_contrast`` of the normalised prompts."""
        anomalous = check_prompt_labels(self.emb_pd, self.anomalous_p)
        ext = np.asarray(self.seed_extension_p, bool)
        return {seed: prompt_contrast(unit_rows(self.emb_pd[use]), anomalous[use])
                for seed, use in ((True, np.ones(len(anomalous), bool)), (False, ~ext))}

    def tile_scores(self, emb_td: np.ndarray, cfg: AggregateConfig) -> np.ndarray:
        """(T,) float64 tile scores with the variant's prompt set and logit scale: ``tile_scores``
        bit for bit (the same operations; the prompts' contrast is made once per class)."""
        scale = self.logit_scale if cfg.logit_scale is None else cfg.logit_scale
        return contrast_scores(unit_rows(emb_td), self._contrast[bool(cfg.seed_states)], scale)


@dataclass(frozen=True)
class ImageEvidence:
    """What aggregation needs of one image (read from the store, or computed by the one-call scorer).

    Attributes:
        emb_td: (T, D) CLIP tile embeddings.
        fused_thw: fusion method -> (T, h, w) fused CLIPSeg map (float32, or float16 from a
            ``fused`` cache); only the fusions the variants use need be there.
        boxes_xyxy: (T, 4) tile boxes; component_t: (T,) component ids; image_hw: (H, W).
    """

    emb_td: np.ndarray
    fused_thw: Mapping[str, np.ndarray]
    boxes_xyxy: np.ndarray
    component_t: np.ndarray
    image_hw: tuple[int, int]

    @classmethod
    def from_maps(cls, *, emb_td: np.ndarray, maps_tlhw: np.ndarray, fusions: Iterable[str],
                  boxes_xyxy: np.ndarray, component_t: np.ndarray, image_hw: tuple[int, int],
                  fused_dtype: str = "float32") -> "ImageEvidence":
        """Evidence from the per-prompt maps (``store_maps``), fused now and rounded to
        ``fused_dtype`` as the ``fused`` cache rounds them (so both paths score alike)."""
        fused = {f: fuse_stored_maps(maps_tlhw, f).astype(fused_dtype) for f in dict.fromkeys(fusions)}
        return cls(emb_td, fused, boxes_xyxy, component_t, tuple(image_hw))


def map_key(cfg: AggregateConfig) -> AggregateConfig:
    """The part of a variant that decides its pixel map: ``top_fraction`` never does, and an
    unscaled map does not depend on the prompt set or the logit scale.

    Example:
        >>> a = map_key(AggregateConfig(top_fraction=0.5, scale_by_tile_score=False, seed_states=False))
        >>> a == map_key(AggregateConfig(scale_by_tile_score=False))
        True
        >>> map_key(AggregateConfig(seed_states=False)) == map_key(AggregateConfig())
        False
    """
    key = dataclasses.replace(cfg, top_fraction=1.0)
    return key if cfg.scale_by_tile_score else dataclasses.replace(key, seed_states=True, logit_scale=None)


@dataclass(frozen=True)
class MapGroup:
    """Variants (indices into a sweep's list) whose pixel maps are identical: one paste and one
    set of pixel metrics serves them all. ``key`` is their shared ``map_key``."""

    key: AggregateConfig
    members: tuple[int, ...]


def plan_maps(cfgs: Sequence[AggregateConfig]) -> tuple[MapGroup, ...]:
    """Group a sweep by the map each variant produces (first appearance order).

    Example:
        >>> groups = plan_maps([AggregateConfig(), AggregateConfig(top_fraction=0.5), AggregateConfig(fusion="geometric")])
        >>> [g.members for g in groups]
        [(0, 1), (2,)]
    """
    members: dict[AggregateConfig, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        members.setdefault(map_key(cfg), []).append(i)
    return tuple(MapGroup(k, tuple(v)) for k, v in members.items())


@dataclass(frozen=True)
class ImageSweep:
    """One image under every variant of a sweep.

    Attributes:
        tile_scores: per variant, its (T,) tile scores; sample_scores: per variant, its score.
        groups: the sweep's ``plan_maps``; windows: per group, its map (``PastedMap``: covered cells).
        component_scores: per variant, its (C,) mean tile score per component (``component_means``).
    """

    tile_scores: tuple[np.ndarray, ...]
    sample_scores: tuple[float, ...]
    groups: tuple[MapGroup, ...]
    windows: tuple[PastedMap, ...]
    component_scores: tuple[np.ndarray, ...]

    def window_of(self, variant: int) -> PastedMap:
        return next(w for g, w in zip(self.groups, self.windows) if variant in g.members)

    def aggregated(self, variant: int) -> Aggregated:
        """The variant's full result, with its (H, W) map."""
        return Aggregated(self.tile_scores[variant], self.window_of(variant).full(), self.sample_scores[variant])


def sweep_image(evidence: ImageEvidence, text: TextEvidence, cfgs: Sequence[AggregateConfig], *,
                groups: tuple[MapGroup, ...] | None = None,
                patch_tyx: Sequence[np.ndarray | None] | None = None, pixels: bool = True) -> ImageSweep:
    """Everything after the models, for every variant of one image: tile scores once per prompt
    set and logit scale, each distinct map (``plan_maps``) pasted once, inside the tiles'
    cells (``paste_cells``: exactly ``paste_tiles``' values there, 0 elsewhere).

    ``patch_tyx``: per variant, its (T, gy, gx) patch scores when its mode is few-shot or mutual,
    else None. Such a variant's map and sample score combine the zero-shot ones with the pasted
    patch map (``combine_maps``; the scores are distances >= 0, so the window's maximum is the
    map's); its tile scores stay zero-shot. ``pixels=False``: scores only, no maps (``windows``
    is empty; ``zsad.torchpixels.sweep_cells`` makes them on a device).
    """
    groups = plan_maps(cfgs) if groups is None else groups
    patch_tyx = list(patch_tyx) if patch_tyx is not None else [None] * len(cfgs)
    by_prompts: dict[tuple, tuple] = {}  # tile scores, component means, the means sorted highest first
    tiles, components, samples = [], [], []
    for cfg in cfgs:
        key = (cfg.seed_states, cfg.logit_scale)
        if key not in by_prompts:
            s = text.tile_scores(evidence.emb_td, cfg)
            means = component_means(s, evidence.component_t)
            by_prompts[key] = s, means, np.sort(means)[::-1]
        tiles.append(by_prompts[key][0])
        components.append(by_prompts[key][1])
        samples.append(top_mean(by_prompts[key][2], cfg.top_fraction))  # == sample_score(...), bit for bit
    windows, fused32 = [], {}  # a float16 cache is widened once per fusion (what ``fused * s`` does anyway)
    for group in groups if pixels else ():
        first = group.members[0]
        cfg, s = cfgs[first], tiles[first]
        if cfg.fusion not in fused32:
            fused32[cfg.fusion] = np.asarray(evidence.fused_thw[cfg.fusion], np.float32)
        fused = fused32[cfg.fusion]
        maps = fused * s.astype(np.float32)[:, None, None] if cfg.scale_by_tile_score else fused
        window = paste_cells(maps, evidence.boxes_xyxy, evidence.image_hw)
        if cfg.patch is not None:
            window, samples = _combine(window, group, cfgs, patch_tyx, evidence, samples)
        windows.append(window)
    return ImageSweep(tuple(tiles), tuple(samples), groups, tuple(windows), tuple(components))


def _combine(window: PastedMap, group: MapGroup, cfgs, patch_tyx, evidence: ImageEvidence,
             samples: list[float]) -> tuple[PastedMap, list[float]]:
    """A patch-mode group's combined map, and its members' combined sample scores (the patch
    scores are distances >= 0, so the covered cells' maximum is the map's)."""
    from .patches import combine_maps  # torch-based module: imported only by patch modes
    patches = patch_tyx[group.members[0]]
    if patches is None:
        raise ValueError(f"a {cfgs[group.members[0]].mode} variant needs its (T, gy, gx) patch scores; none were given")
    patch = paste_cells(patches, evidence.boxes_xyxy, evidence.image_hw)
    peak = np.array([max((float(v.max()) for _, v in patch.cells if v.size), default=0.0)], np.float32)
    rule = cfgs[group.members[0]].patch.combine
    samples = list(samples)
    for i in group.members:
        samples[i] = combine_maps(np.zeros(1, np.float32), peak, samples[i], cfgs[i].patch.combine)[1]
    cells = tuple((box, combine_maps(z, p, 0.0, rule)[0]) for (box, z), (_, p) in zip(window.cells, patch.cells))
    return PastedMap(cells, window.image_hw), samples


def aggregate_variants(evidence: ImageEvidence, text: TextEvidence, cfgs: Sequence[AggregateConfig], *,
                       patch_tyx: Sequence[np.ndarray | None] | None = None) -> list[Aggregated]:
    """``sweep_image`` with each variant's full (H, W) map. The one-call scorer and the cached
    ``aggregate`` flow both come through ``sweep_image``, so they agree exactly."""
    sweep = sweep_image(evidence, text, cfgs, patch_tyx=patch_tyx)
    return [sweep.aggregated(i) for i in range(len(cfgs))]


def aggregate_image(evidence: ImageEvidence, text: TextEvidence, cfg: AggregateConfig) -> Aggregated:
    """``aggregate_variants`` for a single variant."""
    return aggregate_variants(evidence, text, [cfg])[0]

"""Every stage, declared once: name, code version, inputs, arrays with their dimensions, the model
it needs, what it is kept per (an image or a class) and what kind it is.

The plan's hashes and dependencies (``zsad.tasks.plan``), the store's schema
(``zsad.stores.schema``), the key grammar's stage names (``zsad.stores.keys``), the order a
precompute shard runs (``zsad.tasks.shard``) and the prune order (``zsad.flows.cache``) are all
read from ``STAGES``. A new stage is one ``Stage(...)`` here, its task and its core function.

Kinds: ``precompute`` stages run models over images (in this order); ``derived`` stages are made
from others without a model (re-aggregation); ``record`` stages hold facts that are not
computed (thresholds, failures). Array names carry their layout (``boxes_xyxy``: corners x0, y0,
x1, y1; ``maps_tlhw``: tile, prompt, y, x).

Examples:
    >>> STAGE["foreground"].inputs, STAGE["sam"].model, STAGE["clip_text"].per
    (('isnet', 'sam'), 'sam', 'class')
    >>> [s.name for s in STAGES if s.kind == "derived"]
    ['fused', 'memory', 'mutual', 'musc', 'aggregate']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

# Array names read in several modules.
BOXES = "boxes_xyxy"
COMPONENTS = "component_t"
EMBEDDINGS = "emb_td"
PATCHES = "patches_tlyxc"
MAPS = "maps_tlhw"
FUSED = "fused_thw"
PIXEL_MAP = "pixel_map_hw"
MUTUAL_SCORES = "scores_tyx"
TOKENS = "tokens_ltc"  # MuSc's whole-image tokens: layer, token (class token first), channel
CLASS_TOKEN = "class_d"  # the normalised image embedding (RsCIN's class token)
DINO_TOKENS = "tokens_rpc"  # AnomalyDINO: rotation, patch (row-major over the image's grid), channel
NEAREST = "nearest_lnp"  # MuSc: layer, other image of the batch, patch
PATCH_DIMS = ("tile", "layer", "y", "x", "channel")


@dataclass(frozen=True)
class Stage:
    """One stage of the store.

    Attributes:
        name: the store group's first key component.
        version: bump whenever the stage's code changes its output (``history`` says why).
        kind: ``precompute`` (a model over images), ``derived`` (from other stages, no model)
            or ``record`` (facts, not computed).
        per: ``image`` (a unit per image) or ``class`` (a unit per class of a data set).
        inputs: the stages whose hashes enter this one's (precompute stages; a derived stage's
            inputs are the stages it reads).
        arrays: array name -> dimension names (what xarray shows).
        model: the ``PipelineConfig`` model it runs (``isnet``, ``sam``, ``clip``, ``clipseg``;
            ``musc``: ``PipelineConfig.musc.backbone``; ``anomalydino``: ``PipelineConfig.anomalydino.backbone``),
            or None.
        opt_in: the ``PipelineConfig`` field that switches the stage on (``patches``, ``musc``, ``anomalydino``),
            or None (always computed).
        written_by: another stage's task writes it (the patch tokens come with the embeddings).
    """

    name: str
    version: int
    kind: Literal["precompute", "derived", "record"]
    per: Literal["image", "class"] = "image"
    inputs: tuple[str, ...] = ()
    arrays: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    model: str | None = None
    opt_in: str | None = None
    written_by: str | None = None
    history: str = ""


STAGES: tuple[Stage, ...] = (
    Stage("image", 2, "precompute", history="2: faithful decoding (EXIF orientation, 16-bit, float, alpha)"),
    Stage("isnet", 1, "precompute", inputs=("image",), arrays={"prob_hw": ("y", "x")}, model="isnet"),
    Stage("sam", 1, "precompute", inputs=("image",), model="sam",
          arrays={"masks_packed": ("mask", "packed_byte"), "scores_n": ("mask",), BOXES: ("mask", "corner")}),
    Stage("foreground", 1, "precompute", inputs=("isnet", "sam"),
          arrays={"mask_hw": ("y", "x"), "labels_hw": ("y", "x"), "parts_c": ("component",), "kept_n": ("mask",),
                  "component_n": ("mask",)}),
    Stage("tiles", 1, "precompute", inputs=("foreground",),
          arrays={BOXES: ("tile", "corner"), COMPONENTS: ("tile",), "kind_t": ("tile",)}),
    Stage("clip_image", 1, "precompute", inputs=("tiles",), arrays={EMBEDDINGS: ("tile", "embed")}, model="clip"),
    Stage("clip_patch", 1, "precompute", inputs=("tiles",), arrays={PATCHES: PATCH_DIMS}, model="clip", opt_in="patches",
          written_by="clip_image", history="CLIP patch tokens per tile (few-shot and mutual modes)"),
    Stage("clip_text", 2, "precompute", per="class", model="clip",
          arrays={"emb_pd": ("prompt", "embed"), "anomalous_p": ("prompt",), "seed_extension_p": ("prompt",),
                  "prompt": ("prompt",)},
          history="2: tokens trimmed after the longest prompt (same up to float rounding; ~5x faster)"),
    Stage("clipseg", 2, "precompute", inputs=("tiles",), model="clipseg",
          arrays={MAPS: ("tile", "prompt", "y", "x"), "prompt": ("prompt",)},
          history="2: logits cached (logit8), not float16 probabilities"),
    Stage("musc_tokens", 1, "precompute", inputs=("image",), model="musc", opt_in="musc",
          arrays={TOKENS: ("layer", "token", "channel"), CLASS_TOKEN: ("embed",)},
          history="MuSc's whole-image ViT tokens (float16) and class token (float32), zsad.musc"),
    Stage("dino_tokens", 1, "precompute", inputs=("image",), model="anomalydino", opt_in="anomalydino",
          arrays={DINO_TOKENS: ("rotation", "patch", "channel")},
          history="AnomalyDINO's last-block patch tokens (float32) of test images and of each class's first "
                  "references (every rotation), zsad.anomalydino"),
    Stage("fused", 1, "derived", inputs=("image", "tiles", "clipseg"), arrays={FUSED: ("tile", "y", "x")},
          history="the fused (T, h, w) CLIPSeg map of one fusion method"),
    Stage("memory", 1, "derived", per="class", inputs=("clip_patch",), arrays={PATCHES: PATCH_DIMS},
          history="per-class reference patch memory (few-shot)"),
    Stage("mutual", 1, "derived", inputs=("clip_patch",), arrays={MUTUAL_SCORES: ("tile", "y", "x")},
          history="per-image mutual patch scores against the other images of its class"),
    Stage("musc", 1, "derived", inputs=("musc_tokens",), arrays={NEAREST: ("layer", "other", "patch")},
          history="MuSc's nearest-patch distances of an image to each other image of its batch, per r (float32)"),
    Stage("aggregate", 3, "derived", inputs=("tiles", "clip_image", "clip_text", "clipseg", "fused"),
          arrays={PIXEL_MAP: ("y", "x")},
          history="3: read fused maps; exact sigmoid of logit8 codes (was 14 % off at p ~ 1e-7); 2: maps only when "
                  "asked"),
    Stage("thresholds", 1, "record", per="class", inputs=("aggregate",),
          history="decision thresholds, under an aggregate variant's hash"),
    Stage("errors", 1, "record", inputs=("image",), history="per-image failure records, under the image stage's hash"),
)

STAGE: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_VERSIONS: dict[str, int] = {s.name: s.version for s in STAGES}
PRECOMPUTE_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.kind == "precompute" and not s.opt_in)
LATER_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.kind != "precompute")  # in dependency order


def stage(name: str) -> Stage:
    """The declaration of ``name``; a ``ValueError`` listing the stages when there is none."""
    if name not in STAGE:
        raise ValueError(f"unknown stage {name!r}; expected one of {sorted(STAGE)} (declared in zsad/stages.py)")
    return STAGE[name]

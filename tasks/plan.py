"""Stage hashes for a pipeline config: which store groups a run reads and writes.

Each stage's hash covers its own config, its code version (``STAGE_VERSIONS``), the sha256 of
its weights and the hashes of the stages it reads, so a change anywhere recomputes exactly
what depends on it. No model is imported here (hashing the weight files is enough).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zsad.config import AggregateConfig, ModelSpec, PipelineConfig, stage_hash, to_jsonable
from zsad.prompts import localising_prompts
from zsad.stages import STAGES
from zsad.detectors import PATCH_STAGE, TILE_READS
from zsad.variants import Mutual
from zsad.weights import locate_weights

HASHED_STAGES = tuple(s for s in STAGES if s.kind == "precompute")  # the plan's own hashes, in dependency order

def _spec(spec: ModelSpec) -> dict[str, Any]:
    """A model spec without its local path (the weights' sha256 stands for the file)."""
    return to_jsonable(dataclasses.replace(spec, weights=None))


@dataclass(frozen=True)
class StagePlan:
    """Hashes, configs, inputs and weight digests of the precompute stages."""

    hashes: dict[str, str]
    configs: dict[str, Any]
    inputs: dict[str, dict[str, str]]
    weights: dict[str, str | None]
    opted: frozenset[str] = frozenset()  # the PipelineConfig switches that are on (``Stage.opt_in``)
    fused_dtype: str = "float16"

    def fused_config(self, fusion: str) -> dict[str, Any]:
        """What a ``fused`` unit depends on besides the CLIPSeg maps (its group records it)."""
        return {"fusion": fusion, "dtype": self.fused_dtype}

    def fused_inputs(self) -> dict[str, str]:
        return {s: self.hashes[s] for s in ("image", "tiles", "clipseg")}

    def fused_hash(self, fusion: str) -> str:
        """The derived ``fused`` stage of one fusion method: keyed by the CLIPSeg hash (its model,
        localising prompts and map dtype), the tiles and image it pastes into, and the dtype."""
        return stage_hash("fused", self.fused_config(fusion), None, tuple(self.fused_inputs().values()))

    def aggregate_hash(self, agg: AggregateConfig) -> str:
        """A variant's hash: its config (``AggregateConfig.hash_view``) and the stages it reads; a
        few-shot or mutual variant also reads the patch stage (its per-class reference set or
        batch is checked per unit, see ``zsad.tasks.patches``)."""
        return stage_hash("aggregate", agg.hash_view(), None, tuple(self.aggregate_inputs(agg).values()))

    def aggregate_inputs(self, agg: AggregateConfig | None = None) -> dict[str, str]:
        """The stages a variant reads (its detector's ``reads``, ``zsad.detectors``) and, when it
        reads the zero-shot evidence, its fusion's ``fused`` maps; no variant: the zero-shot ones."""
        if agg is None:
            return {s: self.hashes[s] for s in TILE_READS}
        fused = {"fused": self.fused_hash(agg.fusion)} if agg.reads_zero_shot else {}
        return {**{s: self.hashes[s] for s in agg.detector.reads(agg.patch)}, **fused}

    def memory_hash(self, selection: dict[str, Any]) -> str:
        """A few-shot class memory: its reference selection (shots, seed, reference set name) over
        the patch stage."""
        return stage_hash("memory", selection, None, (self.hashes[PATCH_STAGE],))

    def mutual_hash(self, mutual: Mutual) -> str:
        """A mutual variant's per-image scores: its fraction and neighbourhood over the patch stage."""
        return stage_hash("mutual", mutual_config(mutual), None, (self.hashes[PATCH_STAGE],))

    def musc_hash(self, r: int, same_position: int | None) -> str:
        """MuSc's nearest-patch distances at neighbourhood size ``r`` (``musc`` stage) over the
        token stage; the batch each image is compared with is checked per unit."""
        return stage_hash("musc", musc_config(r, same_position), None, (self.hashes["musc_tokens"],))

    def stages(self) -> tuple[str, ...]:
        """The stages a precompute with this config writes (the opt-in ones when asked)."""
        return tuple(s.name for s in HASHED_STAGES if not s.opt_in or s.opt_in in self.opted)


def musc_config(r: int, same_position: int | None) -> dict[str, Any]:
    """What a ``musc`` unit depends on besides the tokens and the batch (its group records it)."""
    return {"r": r, "same_position": same_position}


def mutual_config(mutual: Mutual) -> dict[str, Any]:
    """What the ``mutual`` stage's output depends on besides the patches (its group records it)."""
    return {"mutual_fraction": mutual.mutual_fraction, "neighbourhood": mutual.neighbourhood}


def _batching(cfg: PipelineConfig) -> dict[str, Any]:
    """Cross-image batches and mixed precision change the encoders' output bits: they are part of
    the hash when used (the exact defaults leave existing hashes as they were)."""
    out = {}
    if cfg.images_per_batch != 1:
        out["images_per_batch"] = cfg.images_per_batch
    if cfg.precision != "fp32":
        out["precision"] = cfg.precision
    return out


def stage_configs(cfg: PipelineConfig) -> dict[str, Any]:
    """Each precompute stage's own config (what its group records), without touching weights."""
    return {
        "image": {},
        "isnet": {"model": _spec(cfg.isnet)},
        "sam": {"model": _spec(cfg.sam), "generator": to_jsonable(cfg.sam_generator)},
        "foreground": to_jsonable(cfg.foreground),
        "tiles": to_jsonable(cfg.tiling),
        "clip_image": {"model": _spec(cfg.clip), **_batching(cfg)},
        PATCH_STAGE: {"model": _spec(cfg.clip), "layers": None if cfg.patch_layers is None else list(cfg.patch_layers),
                      **_batching(cfg)},
        "clip_text": {"model": _spec(cfg.clip), "object_name": cfg.prompts.object_name},
        "clipseg": {"model": _spec(cfg.clipseg), "prompts": list(localising_prompts(cfg.prompts.localising)),
                    "map_dtype": cfg.map_dtype, **_batching(cfg)},
        "musc_tokens": None if cfg.musc is None else {
            "model": _spec(cfg.musc.backbone), "image_size": cfg.musc.image_size, "layers": list(cfg.musc.layers),
            **({"precision": cfg.precision} if cfg.precision != "fp32" else {})},
        "dino_tokens": None if cfg.anomalydino is None else {
            "model": _spec(cfg.anomalydino.backbone), "smaller_edge": cfg.anomalydino.smaller_edge,
            "references": cfg.anomalydino.references, "rotations": cfg.anomalydino.rotations},
    }


# A stage's ``model`` -> its spec in a PipelineConfig (None: the stage is off).
MODEL_SPECS = {
    "isnet": lambda cfg: cfg.isnet, "sam": lambda cfg: cfg.sam, "clip": lambda cfg: cfg.clip,
    "clipseg": lambda cfg: cfg.clipseg, "musc": lambda cfg: None if cfg.musc is None else cfg.musc.backbone,
    "anomalydino": lambda cfg: None if cfg.anomalydino is None else cfg.anomalydino.backbone,
}


def model_spec(cfg: PipelineConfig, model: str) -> ModelSpec | None:
    """The spec a stage's ``model`` names (``musc``: the MuSc backbone, None when it is off)."""
    return MODEL_SPECS[model](cfg)


def plan_stages(cfg: PipelineConfig) -> StagePlan:
    """Each precompute stage's hash over its config, its declared inputs' hashes and the sha256 of
    its model's weights (``zsad.stages``)."""
    specs = {s.model: model_spec(cfg, s.model) for s in HASHED_STAGES if s.model}
    weights = {m: locate_weights(spec)[1] for m, spec in specs.items() if spec is not None}
    configs = stage_configs(cfg)
    hashes: dict[str, str] = {}
    inputs: dict[str, dict[str, str]] = {}
    for st in HASHED_STAGES:
        inputs[st.name] = {d: hashes[d] for d in st.inputs}
        hashes[st.name] = stage_hash(st.name, configs[st.name], weights.get(st.model),
                                     tuple(inputs[st.name].values()))
    opted = frozenset(s.opt_in for s in HASHED_STAGES if s.opt_in and getattr(cfg, s.opt_in))
    return StagePlan(hashes, configs, inputs, {s.name: weights.get(s.model) for s in HASHED_STAGES}, opted,
                     cfg.fused_dtype)

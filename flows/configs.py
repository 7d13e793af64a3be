"""Named pipeline configs (``paper``, ``tiny``) or a JSON file; variants named by a sweep, a label or
a stored hash (the grammar itself is ``zsad.sweep``, labels ``zsad.variants``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from zsad.config import (AggregateConfig, AnomalyDinoConfig, ModelSpec, MuscTokensConfig, PipelineConfig,
                         SamGeneratorConfig, config_from_dict)
from zsad.sweep import variant_grid
from zsad.variants import label as variant_label

CHEAPER_SAM = {"paper-sam16": 16, "paper-sam8": 8}  # points per side (the paper: 32)
B16 = ModelSpec("clip", "ViT-B-16-plus-240", "laion400m_e32")
MUSC = {  # the seed's pipeline plus MuSc's tokens: MuSc's README rows (VisA/MVTec AD backbone tables)
    "musc": MuscTokensConfig(),  # ViT-L-14-336 (OpenAI), 518 px, blocks 5/11/17/23: its default
    "musc-b16": MuscTokensConfig(B16, 240, (2, 5, 8, 11)),  # its README names no layers: the quarter points
    "musc-b16-512": MuscTokensConfig(B16, 512, (2, 5, 8, 11)),
    # MuSc's DINO rows (its README's backbone table; layers as its scripts/musc_*.sh)
    "musc-dinov2-l518": MuscTokensConfig(ModelSpec("dino", "dinov2_vitl14", "lvd142m"), 518, (5, 11, 17, 23)),
    "musc-dinov2-l336": MuscTokensConfig(ModelSpec("dino", "dinov2_vitl14", "lvd142m"), 336, (5, 11, 17, 23)),
    "musc-dinov2-b518": MuscTokensConfig(ModelSpec("dino", "dinov2_vitb14", "lvd142m"), 518, (2, 5, 8, 11)),
    "musc-dinov2-b336": MuscTokensConfig(ModelSpec("dino", "dinov2_vitb14", "lvd142m"), 336, (2, 5, 8, 11)),
    "musc-dino-b16-512": MuscTokensConfig(ModelSpec("dino", "dino_vitb16", "imagenet"), 512, (2, 5, 8, 11)),
    "musc-dino-b16-256": MuscTokensConfig(ModelSpec("dino", "dino_vitb16", "imagenet"), 256, (2, 5, 8, 11)),
}
ANOMALYDINO = {"anomalydino": AnomalyDinoConfig(),  # ViT-S/14 at 448: the official default
               "anomalydino-b448": AnomalyDinoConfig(ModelSpec("dino", "dinov2_vitb14", "lvd142m")),
               "anomalydino-l448": AnomalyDinoConfig(ModelSpec("dino", "dinov2_vitl14", "lvd142m"))}
TINY = {  # random tiny models (tests, the demo)
    "tiny": PipelineConfig.tiny(),
    "musc-tiny": PipelineConfig.tiny(musc=MuscTokensConfig(ModelSpec("clip", "tiny"), 96, (0, 1))),  # 6 x 6
    "musc-dino-tiny": PipelineConfig.tiny(musc=MuscTokensConfig(ModelSpec("dino", "tiny-dinov2"), 84, (0, 1))),
    "dino-tiny": PipelineConfig.tiny(  # the demo: MuSc's tokens of the tiny CLIP and AnomalyDINO's of a tiny DINOv2
        musc=MuscTokensConfig(ModelSpec("clip", "tiny"), 96, (0, 1)),
        anomalydino=AnomalyDinoConfig(ModelSpec("dino", "tiny-dinov2"), 56, 4)),
}
NAMED = ("paper", *CHEAPER_SAM, *MUSC, *ANOMALYDINO, *TINY)


def load_pipeline_config(name_or_path: str, **overrides: Any) -> PipelineConfig:
    """``paper`` (the seed's models), ``paper-sam16``/``paper-sam8`` (the same with SAM's point
    grid at 16x16 / 8x8: cheaper on a CPU, not the seed's setting; see docs/performance.md),
    ``musc``... (the seed's plus MuSc's tokens, ``MUSC``: CLIP and DINO rows), ``anomalydino``...
    (the seed's plus AnomalyDINO's tokens, ``ANOMALYDINO``), the random tiny models (``TINY``) or a
    JSON file of a ``PipelineConfig``."""
    if name_or_path == "paper":
        cfg = PipelineConfig.paper()
    elif name_or_path in CHEAPER_SAM:
        cfg = PipelineConfig.paper(sam_generator=SamGeneratorConfig(points_per_side=CHEAPER_SAM[name_or_path]))
    elif name_or_path in MUSC:
        cfg = PipelineConfig.paper(musc=MUSC[name_or_path])
    elif name_or_path in ANOMALYDINO:
        cfg = PipelineConfig.paper(anomalydino=ANOMALYDINO[name_or_path])
    elif name_or_path in TINY:
        cfg = TINY[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"config {name_or_path!r} is neither one of {', '.join(NAMED)} nor an existing JSON "
                             "file")
        try:
            cfg = config_from_dict(PipelineConfig, json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid zsad pipeline config: {exc}") from None
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if overrides.get("device") is not None:
        check_device(cfg.device)
    return cfg


def check_device(device: str) -> str:
    """``device`` if torch can use it here, else a ``ValueError`` saying why (checked before any work)."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False); "
                             "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ValueError(f"--device {device}: zsad runs on cpu or cuda, got {dev.type}")
    return device


def stored_variants(groups) -> list[tuple[str, dict[str, Any]]]:
    """``(aggregate hash, recorded config)`` of the aggregate variants among a store's stage
    ``groups`` (``StageStore.stages()``)."""
    return [(h, a["config"]) for s, h, a in groups if s == "aggregate" and "config" in a]


def names_hash(word: str, stage_hash: str) -> bool:
    """``word`` names ``stage_hash``: it is the hash or a prefix of it of at least 6 hex digits."""
    return len(word) >= 6 and stage_hash.startswith(word.lower())


def resolve_variants(spec: str | None, stored: list[tuple[str, dict[str, Any]]] = ()) -> list[AggregateConfig]:
    """Variants named by a grammar (``variant_grid``), a label (``harmonic/top0.25/...``), or an
    aggregate hash (or its prefix, at least 6 hex digits) of a variant the store holds.

    Args:
        spec: what the user typed; several labels or hashes may be joined with spaces.
        stored: ``(aggregate hash, recorded config)`` of the store's aggregate groups.
    """
    if spec is None or "=" in spec or spec in ("", "seed", "grid"):
        return variant_grid(spec)
    known = {variant_label(a): a for a in variant_grid("grid")}
    for h, recorded in stored:
        agg = AggregateConfig.from_json(recorded)
        known.setdefault(variant_label(agg), agg)
    out = []
    for word in spec.split():
        if word in known:
            out.append(known[word])
            continue
        hits = [c for h, c in stored if names_hash(word, h)]
        if len(hits) != 1:
            why = "matches several stored variants" if hits else "is neither a stored variant's hash nor a label"
            raise ValueError(f"variant {word!r} {why}; `zsad cache list` shows the aggregate hashes, and labels look "
                             f"like {variant_label(AggregateConfig())!r}")
        out.append(AggregateConfig.from_json(hits[0]))
    return list(dict.fromkeys(out))

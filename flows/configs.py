"""Named pipeline configs (``paper``, ``tiny``) or a JSON file, and aggregation variant grids."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

from zsad.config import FUSIONS, MODES, AggregateConfig, PipelineConfig, SamGeneratorConfig, config_from_dict
from zsad.modes import mode_label, normalise

CHEAPER_SAM = {"paper-sam16": 16, "paper-sam8": 8}  # points per side (the paper: 32)


def load_pipeline_config(name_or_path: str, **overrides: Any) -> PipelineConfig:
    """``paper`` (the seed's models), ``paper-sam16``/``paper-sam8`` (the same with SAM's point
    grid at 16x16 / 8x8: cheaper on a CPU, not the seed's setting; see the README's figures),
    ``tiny`` (random tiny models) or a JSON file of a ``PipelineConfig``."""
    if name_or_path == "paper":
        cfg = PipelineConfig.paper()
    elif name_or_path in CHEAPER_SAM:
        cfg = PipelineConfig.paper(sam_generator=SamGeneratorConfig(points_per_side=CHEAPER_SAM[name_or_path]))
    elif name_or_path == "tiny":
        cfg = PipelineConfig.tiny()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"config {name_or_path!r} is neither 'paper', 'paper-sam16', 'paper-sam8', 'tiny' nor an "
                             "existing JSON file")
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


GRID = {
    "fusion": FUSIONS,
    "top_fraction": (0.25, 0.5, 1.0),
    "scale_by_tile_score": (True, False),
    "seed_states": (True, False),
    "logit_scale": (None, 1 / 0.07),  # CLIP's own (100), WinCLIP's temperature 0.07
}
SCALE_NAMES = {"clip": None, "winclip": 1 / 0.07}
# Fields a sweep may name besides GRID's (not in the full grid): the few-shot and mutual modes.
MODE_FIELDS = {
    "mode": MODES,
    "combine": ("mean", "patch"),
    "neighbourhood": (1,),
    "mutual_fraction": (0.3,),
    "shots": (0,),
    "shot_seed": (0,),
    "reference": ("",),
}
FIELDS = {**GRID, **MODE_FIELDS}


def variant_grid(spec: str | None) -> list[AggregateConfig]:
    """``None``/``seed``: the seed's variant; ``grid``: the full grid (72 variants);
    or ``key=v1,v2;key=v3`` to sweep named fields (others at the seed's values), including the
    modes: ``mode=zero-shot,few-shot,mutual;shots=1,2,4``. Fields a mode ignores are reset, so
    a sweep lists each distinct variant once.

    Values are parsed by the field's type: booleans only ``true``/``false``, numbers as numbers;
    anything else is an error naming the field. Repeated values give one variant.
    """
    if spec in (None, "", "seed"):
        return [AggregateConfig()]
    axes: dict[str, tuple] = {}
    if spec == "grid":
        axes = dict(GRID)
    else:
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            key, eq, values = part.partition("=")
            key = key.strip()
            if key not in FIELDS:
                raise ValueError(f"unknown aggregation field {key!r} in {spec!r}; known: {sorted(FIELDS)}")
            if not eq or not values.strip():
                raise ValueError(f"aggregation field {key!r} in {spec!r} has no values; write {key}=v1,v2")
            axes[key] = tuple(dict.fromkeys(_parse(key, v.strip()) for v in values.split(",")))
    names = list(axes)
    return list(dict.fromkeys(normalise(AggregateConfig(**dict(zip(names, combo))))
                              for combo in itertools.product(*(axes[n] for n in names))))


def with_shots(spec: str | None, shots: int | None, seed: int | None, reference: str | None = None
               ) -> str | None:
    """``--shots K --shot-seed S [--reference DIR]`` as grammar: ``spec`` with
    ``shots=K;shot_seed=S`` (and ``mode=few-shot`` when it names no mode); ``reference`` (the
    data set name of a cached reference folder) adds ``reference=NAME`` and, unless ``shots``
    is given, ``shots=0`` (every image of the folder).

    Example:
        >>> with_shots("seed", 4, None), with_shots("mode=zero-shot,few-shot", 2, 1)
        ('mode=few-shot;shots=4', 'mode=zero-shot,few-shot;shots=2;shot_seed=1')
        >>> with_shots("seed", None, None, "visa-ref-0a1b2c3d")
        'mode=few-shot;shots=0;reference=visa-ref-0a1b2c3d'
    """
    if shots is None and seed is None and reference is None:
        return spec
    if reference is not None and shots is None:
        shots = 0
    if spec in (None, "", "seed"):
        spec = "mode=few-shot"
    elif spec == "grid" or "=" not in spec:
        raise ValueError(f"--shots/--shot-seed extend a sweep such as 'mode=few-shot;fusion=harmonic', not {spec!r}; "
                         "or write shots=K;shot_seed=S into --variants")
    fields = {p.partition("=")[0].strip() for p in spec.split(";")}
    if fields & {"shots", "shot_seed", "reference"}:
        raise ValueError(f"--variants {spec!r} already names shots, shot_seed or reference; drop --shots/--shot-seed/"
                         "--reference")
    if "mode" not in fields:
        spec += ";mode=few-shot"
    elif "few-shot" not in spec:
        raise ValueError(f"--shots: --variants {spec!r} has no few-shot mode; add few-shot to its mode= values")
    return spec + (f";shots={shots}" if shots is not None else "") + (f";shot_seed={seed}" if seed is not None else "") \
        + (f";reference={reference}" if reference is not None else "")


def _parse(key: str, v: str) -> Any:
    if key == "logit_scale":
        if v.lower() in SCALE_NAMES:
            return SCALE_NAMES[v.lower()]
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"aggregation field 'logit_scale' takes clip, winclip or a number, got {v!r}") from None
    kind = type(FIELDS[key][0])
    if key == "reference":
        return v
    if kind is int:
        try:
            return int(v)
        except ValueError:
            raise ValueError(f"aggregation field {key!r} takes a whole number, got {v!r}") from None
    if kind is bool:
        if v.lower() not in ("true", "false"):
            raise ValueError(f"aggregation field {key!r} takes true or false, got {v!r}")
        return v.lower() == "true"
    if kind is float:
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"aggregation field {key!r} takes a number, got {v!r}") from None
    if v not in FIELDS[key]:
        raise ValueError(f"aggregation field {key!r} takes one of {', '.join(FIELDS[key])}, got {v!r}")
    return v


def variant_label(agg: AggregateConfig) -> str:
    return f"{agg.fusion}/top{agg.top_fraction:g}/{'scaled' if agg.scale_by_tile_score else 'unscaled'}/" \
           f"{'seed' if agg.seed_states else 'winclip'}-prompts" + \
        ("" if agg.logit_scale is None else f"/scale{agg.logit_scale:.4g}") + mode_label(agg)


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
        agg = config_from_dict(AggregateConfig, recorded)
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
        out.append(config_from_dict(AggregateConfig, hits[0]))
    return list(dict.fromkeys(out))

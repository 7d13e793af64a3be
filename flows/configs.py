"""Named pipeline configs (``paper``, ``tiny``) or a JSON file, and aggregation variant grids."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

from zsad.config import AggregateConfig, PipelineConfig, config_from_dict


def load_pipeline_config(name_or_path: str, **overrides: Any) -> PipelineConfig:
    """``paper`` (the seed's models), ``tiny`` (random tiny models) or a JSON file of a
    ``PipelineConfig`` (as written by ``zsad precompute --dump-config``)."""
    if name_or_path == "paper":
        cfg = PipelineConfig.paper()
    elif name_or_path == "tiny":
        cfg = PipelineConfig.tiny()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"config {name_or_path!r} is neither 'paper', 'tiny' nor an existing JSON file")
        try:
            cfg = config_from_dict(PipelineConfig, json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid zsad pipeline config: {exc}") from None
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


GRID = {
    "fusion": ("harmonic", "arithmetic", "geometric"),
    "top_fraction": (0.25, 0.5, 1.0),
    "scale_by_tile_score": (True, False),
    "seed_states": (True, False),
}


def variant_grid(spec: str | None) -> list[AggregateConfig]:
    """``None``/``seed``: the seed's variant; ``grid``: the full grid (36 variants);
    or ``key=v1,v2;key=v3`` to sweep named fields (others at the seed's values)."""
    if spec in (None, "", "seed"):
        return [AggregateConfig()]
    axes: dict[str, tuple] = {}
    if spec == "grid":
        axes = dict(GRID)
    else:
        for part in spec.split(";"):
            key, _, values = part.partition("=")
            key = key.strip()
            if key not in GRID:
                raise ValueError(f"unknown aggregation field {key!r} in {spec!r}; known: {sorted(GRID)}")
            axes[key] = tuple(_parse(v.strip()) for v in values.split(","))
    names = list(axes)
    return [AggregateConfig(**dict(zip(names, combo))) for combo in itertools.product(*(axes[n] for n in names))]


def _parse(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return float(v)
    except ValueError:
        return v


def variant_label(agg: AggregateConfig) -> str:
    return f"{agg.fusion}/top{agg.top_fraction:g}/{'scaled' if agg.scale_by_tile_score else 'unscaled'}/" \
           f"{'seed' if agg.seed_states else 'winclip'}-prompts"

"""Model registry: ``build_<family>(spec, weights_path | None)``, as segment-anything's
``sam_model_registry``. ``load_model`` resolves and checks the weights first."""

from __future__ import annotations

from typing import Any, Callable

from ..config import ModelSpec
from ..weights import locate_weights, weights_key
from .clip import build_clip
from .clipseg import build_clipseg
from .dino import build_dino
from .isnet import build_isnet
from .sam import build_sam

MODEL_REGISTRY: dict[str, Callable[..., Any]] = {
    "clip": build_clip,
    "clipseg": build_clipseg,
    "sam": build_sam,
    "isnet": build_isnet,
    "dino": build_dino,
}


def load_model(spec: ModelSpec, **kwargs: Any) -> Any:
    """Locate + check weights, build the wrapper, record ``weights_sha256`` on it."""
    if spec.family not in MODEL_REGISTRY:
        raise ValueError(f"unknown model family {spec.family!r}; known: {sorted(MODEL_REGISTRY)}")
    path, sha = locate_weights(spec)
    model = MODEL_REGISTRY[spec.family](spec, path, **kwargs)
    model.weights_sha256 = sha
    return model


__all__ = ["MODEL_REGISTRY", "build_clip", "build_clipseg", "build_dino", "build_sam", "build_isnet", "load_model",
           "locate_weights", "weights_key"]

"""Frozen configuration dataclasses and the stage hash.

Every parameter that changes a stage's output lives in one of these dataclasses, so that
``stage_hash`` over (stage name, code version, config, weights sha256, input hashes) names a
cache entry that can never be stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .sam_config import SamGeneratorConfig  # noqa: F401 (PipelineConfig.sam_generator; imported from here too)
from .stages import STAGE_VERSIONS
from .stages import stage as stage_decl
from .variants import FUSIONS, MODES, AggregateConfig, FewShot, Mutual

PRECISIONS = ("fp32", "bf16", "fp16")
FUSED_DTYPES = ("float16", "float32")  # the ``fused`` stage's maps (README: bytes vs effect on metrics)



@dataclass(frozen=True)
class ModelSpec:
    """Which network to build.

    Attributes:
        family: ``"clip"``, ``"clipseg"``, ``"sam"``, ``"isnet"`` or ``"dino"`` (DINO and DINOv2).
        arch: architecture name inside the family (``"ViT-B-16-plus-240"``, ``"vit_h"``,
            ``"rd64-refined"``, ``"isnet"``, ``"dinov2_vitl14"``, ``"dino_vitb16"`` or ``"tiny"``).
        pretrained: weights tag (``"laion400m_e32"``, ``"general-use"``) or ``"random"``.
        weights: explicit local path of the weights (file or Hugging Face snapshot folder);
            ``None`` means "look in the default places" unless ``pretrained == "random"``.
    """

    family: str
    arch: str
    pretrained: str = "random"
    weights: str | None = None

    @property
    def is_random(self) -> bool:
        return self.pretrained == "random"


@dataclass(frozen=True)
class ForegroundConfig:
    """Foreground = union of SAM masks lying mostly inside the thresholded IS-Net map.

    Attributes:
        isnet_threshold: IS-Net probability (after min-max normalisation, as IS-Net's own
            inference script does) above which a pixel is foreground.
        min_coverage: fraction of a SAM mask that must be IS-Net foreground to keep it (seed: 0.8).
        connectivity: 1 = 4-connected, 2 = 8-connected components.
    """

    isnet_threshold: float = 0.5
    min_coverage: float = 0.8
    connectivity: int = 2


@dataclass(frozen=True)
class TilingConfig:
    """Tile geometry (seed: 352 px minimum, aspect > 1.5 and > 20 SAM parts = elongated)."""

    min_tile: int = 352
    elongated_aspect: float = 1.5
    elongated_min_parts: int = 20


@dataclass(frozen=True)
class PromptConfig:
    """Prompt lists. ``object_name`` overrides the name derived from the class folder."""

    object_name: str | None = None
    localising: tuple[str, ...] | None = None  # None = the seed's list


@dataclass(frozen=True)
class MuscTokensConfig:
    """MuSc's whole-image features (the ``musc_tokens`` stage): each image resized to
    ``image_size`` square, position embeddings interpolated to its grid, the tokens (class token
    first) after the blocks ``layers`` (0-based) and RsCIN's class token. ``backbone``: an
    open_clip tower (``family="clip"``; bicubic resize, the model's mean/std, the normalised image
    embedding) or a DINO / DINOv2 one (``family="dino"``; bilinear resize, ImageNet mean/std, the
    last block's normed class token), each as MuSc's code runs it. Default: MuSc's own setup."""

    backbone: ModelSpec = ModelSpec("clip", "ViT-L-14-336", "openai")
    image_size: int = 518
    layers: tuple[int, ...] = (5, 11, 17, 23)

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"MuscTokensConfig.image_size must be a whole number of pixels, got {self.image_size!r}")
        if not self.layers or any(not isinstance(i, int) or i < 0 for i in self.layers):
            raise ValueError(f"MuscTokensConfig.layers must be block indices >= 0 (0-based), got {self.layers!r}")


@dataclass(frozen=True)
class AnomalyDinoConfig:
    """AnomalyDINO's tokens (the ``dino_tokens`` stage): each image's smaller edge resized to
    ``smaller_edge`` (aspect kept, cropped from the top-left to whole patches), the last block's
    normed patch tokens (float32), decoded with OpenCV as the official code. Test images get one
    set; the first ``references`` of each class's sorted ``train/good`` file names (enough for
    every ``seed * shots + shots <= references``) get one per rotation (8 with ``rotations``).
    Default: the official setup (ViT-S/14 at 448, agnostic preprocessing)."""

    backbone: ModelSpec = ModelSpec("dino", "dinov2_vits14", "lvd142m")
    smaller_edge: int = 448
    references: int = 16
    rotations: bool = True

    def __post_init__(self) -> None:
        for name in ("smaller_edge", "references"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (name == "smaller_edge"
                                                                                    and value < 1):
                raise ValueError(f"AnomalyDinoConfig.{name} must be a whole number >= "
                                 f"{1 if name == 'smaller_edge' else 0}, got {value!r}")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the method needs. ``paper()`` is the seed's setup, ``tiny()`` the CPU demo."""

    clip: ModelSpec = ModelSpec("clip", "ViT-B-16-plus-240", "laion400m_e32")
    clipseg: ModelSpec = ModelSpec("clipseg", "rd64-refined", "CIDAS")
    sam: ModelSpec = ModelSpec("sam", "vit_h", "sa-1b")
    isnet: ModelSpec = ModelSpec("isnet", "isnet", "general-use")
    sam_generator: SamGeneratorConfig = SamGeneratorConfig()
    foreground: ForegroundConfig = ForegroundConfig()
    tiling: TilingConfig = TilingConfig()
    prompts: PromptConfig = PromptConfig()
    aggregate: AggregateConfig = AggregateConfig()
    map_dtype: str = "logit8"
    fused_dtype: str = "float16"
    patches: bool = False
    patch_layers: tuple[int, ...] | None = None
    musc: MuscTokensConfig | None = None
    anomalydino: AnomalyDinoConfig | None = None
    device: str = "cpu"
    batch_size: int = 16
    images_per_batch: int = 1
    precision: str = "fp32"

    def __post_init__(self) -> None:
        """``patches`` adds the ``clip_patch`` stage (CLIP patch tokens after the blocks ``patch_layers``;
        None = the last block of each quarter of the tower) that the few-shot and mutual modes read.
        ``images_per_batch`` > 1 batches tiles of several images through CLIP and CLIPSeg (fills
        a GPU; results equal the exact per-image mode up to float rounding, so they get their own
        stage hash); ``precision`` ``bf16``/``fp16`` runs those two encoders under autocast.
        ``musc`` adds the ``musc_tokens`` stage (MuSc's whole-image tokens, ``zsad.musc``),
        ``anomalydino`` the ``dino_tokens`` stage (AnomalyDINO's patch tokens, ``zsad.anomalydino``)."""
        if not isinstance(self.images_per_batch, int) or self.images_per_batch < 1:
            raise ValueError(f"images_per_batch must be a whole number >= 1 (1 = exact per-image batches), "
                             f"got {self.images_per_batch!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.fused_dtype not in FUSED_DTYPES:
            raise ValueError(f"fused_dtype (the cached fused maps) must be one of {', '.join(FUSED_DTYPES)}, "
                             f"got {self.fused_dtype!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> "PipelineConfig":
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> "PipelineConfig":
        """Random-weight tiny models: seconds on a CPU. Scores are meaningless, shapes are real.

        The SAM generator's quality thresholds are opened up so that random masks survive and
        every code path (filtering, components, tiling) is exercised; the tile minimum is
        lowered to suit the small synthetic images.
        """
        base = cls(
            clip=ModelSpec("clip", "tiny"),
            clipseg=ModelSpec("clipseg", "tiny"),
            sam=ModelSpec("sam", "tiny"),
            isnet=ModelSpec("isnet", "tiny"),
            sam_generator=SamGeneratorConfig(
                points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7
            ),
            tiling=TilingConfig(min_tile=96),
        )
        return dataclasses.replace(base, **overrides)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses/tuples/dicts -> plain JSON types (stable for hashing)."""
    if hasattr(obj, "to_json") and not isinstance(obj, type):  # its own stored form (AggregateConfig)
        return to_jsonable(obj.to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise TypeError(f"cannot put a {type(obj).__name__} into a stage hash: {obj!r}")


def stage_hash(stage: str, config: Any, weights_sha256: str | None = None,
               inputs: tuple[str, ...] | list[str] = ()) -> str:
    """16-hex-digit hash naming one stage's cache entry.

    Args:
        stage: stage name, a key of ``STAGE_VERSIONS``.
        config: the stage's config (a dataclass or plain JSON data).
        weights_sha256: sha256 of the model weights used (``"random:<seed>"`` for random ones).
        inputs: hashes of the stages this one reads.

    Example:
        >>> stage_hash("tiles", {"min_tile": 352}) == stage_hash("tiles", {"min_tile": 352})
        True
        >>> stage_hash("tiles", {"min_tile": 352}) == stage_hash("tiles", {"min_tile": 353})
        False
    """
    payload = {
        "stage": stage,
        "version": stage_decl(stage).version,  # an unknown stage: a ValueError listing the declared ones
        "config": to_jsonable(config),
        "weights": weights_sha256,
        "inputs": list(inputs),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) frozen config dataclass from ``to_jsonable`` output."""
    if hasattr(cls, "from_json"):
        return cls.from_json(data)
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"{cls.__name__} has no field {key!r}; known fields: {sorted(fields)}")
        ftype = fields[key].type
        name = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", "")
        sub = _DATACLASSES.get(name.split("|")[0].strip())  # "MuscTokensConfig | None" -> MuscTokensConfig
        if sub is not None and isinstance(value, dict):
            value = config_from_dict(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


_DATACLASSES = {c.__name__: c for c in (ModelSpec, SamGeneratorConfig, ForegroundConfig, TilingConfig,
                                         PromptConfig, AggregateConfig, MuscTokensConfig, AnomalyDinoConfig,
                                         PipelineConfig)}
__all__ = ["MODES", "FUSIONS", "FewShot", "Mutual", "ModelSpec", "SamGeneratorConfig", "ForegroundConfig",
           "TilingConfig", "PromptConfig", "AggregateConfig", "MuscTokensConfig", "AnomalyDinoConfig", "PipelineConfig", "stage_hash", "to_jsonable",
           "config_from_dict", "STAGE_VERSIONS"]

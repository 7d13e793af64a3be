"""SAM's automatic mask generator settings (``PipelineConfig.sam_generator``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SAM_ENGINES = ("zsad", "stock")
SAM_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class SamGeneratorConfig:
    """SAM's automatic masks: ``segment_anything.SamAutomaticMaskGenerator``'s arguments (its
    defaults) and how zsad runs them.

    Attributes:
        engine: ``"zsad"`` (``zsad.models.sam_amg``: the same masks, scores and boxes as stock
            for the same point batches, faster) or ``"stock"`` (segment-anything's generator).
            Not part of the stage hash: both give the same output (``tests/test_sam_amg.py``).
        points_per_batch: point prompts per decoder batch; 0 = as many as half the free device
            memory holds (64 on a CPU). Other than 64, masks equal stock's up to float rounding
            (the README's tolerance), so the value is part of the stage hash.
        share_image_side: compute the first two-way layer's projections of the image tokens once
            per image instead of once per prompt (the CPU lever; equal up to float rounding).
        precision: ``"bf16"`` runs the image encoder and mask decoder under bf16 autocast.
        compile: ``torch.compile`` the image encoder and mask decoder.
    The last three are part of the stage hash only when set, so the default hash stays as it was.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    engine: str = "zsad"
    share_image_side: bool = False
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.engine not in SAM_ENGINES:
            raise ValueError(f"sam_generator.engine must be one of {', '.join(SAM_ENGINES)}, got {self.engine!r}")
        if self.precision not in SAM_PRECISIONS:
            raise ValueError(f"sam_generator.precision must be one of {', '.join(SAM_PRECISIONS)}, "
                             f"got {self.precision!r}")
        if not isinstance(self.points_per_batch, int) or self.points_per_batch < 0:
            raise ValueError(f"sam_generator.points_per_batch must be a whole number >= 0 (0 = from free device "
                             f"memory), got {self.points_per_batch!r}")
        if self.engine == "stock" and (self.share_image_side or self.precision != "fp32" or self.compile
                                       or self.points_per_batch == 0):
            raise ValueError("sam_generator: share_image_side, precision, compile and points_per_batch=0 need "
                             "engine='zsad'; the stock generator has none of them")

    def with_options(self, text: str) -> "SamGeneratorConfig":
        """This config with zsad's generator options from ``text``, comma-separated: ``shared``
        (``share_image_side``), ``batch=auto`` or ``batch=N`` (``points_per_batch``), ``bf16``,
        ``compile``.

        Example:
            >>> c = SamGeneratorConfig().with_options("shared,batch=auto,bf16")
            >>> (c.share_image_side, c.points_per_batch, c.precision, c.compile)
            (True, 0, 'bf16', False)
        """
        changes: dict[str, Any] = {}
        for word in (w.strip() for w in text.split(",") if w.strip()):
            key, _, value = word.partition("=")
            if key == "shared" and not value:
                changes["share_image_side"] = True
            elif key in ("bf16", "compile") and not value:
                changes["precision" if key == "bf16" else "compile"] = "bf16" if key == "bf16" else True
            elif key == "batch" and (value == "auto" or value.isdigit() and int(value) > 0):
                changes["points_per_batch"] = 0 if value == "auto" else int(value)
            else:
                raise ValueError(f"SAM option {word!r} is not one of shared, batch=auto, batch=N (N >= 1), bf16, "
                                 f"compile (comma-separated, e.g. 'shared,batch=auto')")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The stage hash's view: stock's arguments, plus the options that change bits when set."""
        out = {f: getattr(self, f) for f in ("points_per_side", "points_per_batch", "pred_iou_thresh",
                                              "stability_score_thresh", "box_nms_thresh", "min_mask_region_area")}
        extra = {"share_image_side": self.share_image_side, "precision": self.precision, "compile": self.compile}
        defaults = {"share_image_side": False, "precision": "fp32", "compile": False}
        return {**out, **{k: v for k, v in extra.items() if v != defaults[k]}}

"""Predict one in-memory image: score, decision, heatmap, predicted mask, a panel to look at.

Example (real weights; see the README for where they go)::

    from zsad.config import PipelineConfig
    from zsad.pipeline import Models
    from zsad.predict import predict_image

    cfg = PipelineConfig.paper()
    models = Models.load(cfg)                       # once; reuse for many images
    p = predict_image(image_hw3, "pcb1", models, cfg, threshold=0.62, pixel_threshold=0.05)
    p.sample_score, p.decision, p.mask_hw           # float, "anomalous" | "normal", (H, W) bool
    open("pcb1.png", "wb").write(p.panel_png())

The cached command ``zsad predict`` computes the same numbers (from equal model outputs, the
one-call scorer's zero-shot scores and the store's agree bit for bit: README "Reproducibility")
and takes its thresholds from the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .plots import prediction_panel
from .thresholds import decide

if TYPE_CHECKING:  # the models are imported only when an image is actually scored
    from .config import PipelineConfig
    from .pipeline import ImageResult, Models, TextEmbeddings


def describe(class_name: str, score: float, threshold: float | None, decision: str) -> str:
    """The one-line verdict used as a panel title and in tables.

    Example:
        >>> describe("pill", 0.734, 0.5, "anomalous")
        'pill: score 0.734 >= 0.5: ANOMALOUS'
        >>> describe("pill", 0.2, None, "unknown")
        'pill: score 0.2 (no threshold)'
    """
    if threshold is None:
        return f"{class_name}: score {score:.3g} (no threshold)"
    return f"{class_name}: score {score:.3g} {'>=' if score >= threshold else '<'} {threshold:.3g}: {decision.upper()}"


def panel_png(*, image_hw3: np.ndarray, pixel_map_hw: np.ndarray, class_name: str, score: float,
              threshold: float | None, pixel_threshold: float | None, caption: str = "",
              gt_mask_hw: np.ndarray | None = None, boxes_xyxy: np.ndarray | None = None) -> bytes:
    """The one prediction panel (``zsad.plots.prediction_panel``): its title is ``caption — ``
    and the verdict (``describe``), coloured by the decision at ``threshold``; the predicted mask
    is ``map >= pixel_threshold``; ``gt_mask_hw`` and the tiles' ``boxes_xyxy`` are drawn when given.
    ``zsad predict``, the report's examples and ``Prediction.panel_png`` all draw it here."""
    verdict = decide(score, threshold)
    title = (f"{caption} — " if caption else "") + describe(class_name, score, threshold, verdict)
    return prediction_panel(image_hw3, pixel_map_hw, title, verdict, pixel_threshold, gt_mask_hw,
                            boxes_xyxy=boxes_xyxy)


@dataclass
class Prediction:
    """What ``predict_image`` returns.

    Attributes:
        sample_score: image anomaly score in [0, 1].
        decision: ``"anomalous"``, ``"normal"`` or ``"unknown"`` (no threshold given).
        pixel_map_hw: (H, W) float32 anomaly map.
        mask_hw: (H, W) bool predicted defect mask (``map >= pixel_threshold``) or None.
        result: every intermediate (tiles, foreground, per-prompt maps...).
    """

    class_name: str
    image_hw3: np.ndarray
    sample_score: float
    decision: str
    threshold: float | None
    pixel_threshold: float | None
    pixel_map_hw: np.ndarray
    mask_hw: np.ndarray | None
    result: ImageResult | None = None

    def panel_png(self, caption: str = "") -> bytes:
        """The anomalib-style panel as PNG bytes (``panel_png``)."""
        return panel_png(image_hw3=self.image_hw3, pixel_map_hw=self.pixel_map_hw, class_name=self.class_name,
                         score=self.sample_score, threshold=self.threshold, pixel_threshold=self.pixel_threshold,
                         caption=caption)


def make_prediction(class_name: str, image_hw3: np.ndarray, sample_score: float, pixel_map_hw: np.ndarray,
                    threshold: float | None, pixel_threshold: float | None,
                    result: ImageResult | None = None) -> Prediction:
    """Apply the thresholds to a score and a map (shared by ``predict_image`` and the store path)."""
    mask = None if pixel_threshold is None else np.asarray(pixel_map_hw) >= pixel_threshold
    return Prediction(class_name, image_hw3, float(sample_score), decide(sample_score, threshold), threshold,
                      pixel_threshold, pixel_map_hw, mask, result)


def predict_image(image_hw3: np.ndarray, class_name: str, models: Models, cfg: PipelineConfig,
                  threshold: float | None = None, pixel_threshold: float | None = None,
                  text: TextEmbeddings | None = None) -> Prediction:
    """Score one (H, W, 3) uint8 RGB image of ``class_name`` and apply the thresholds.

    Pass ``text`` (``zsad.pipeline.embed_prompts``) to reuse a class's prompt embeddings.
    """
    from .pipeline import score_image
    r = score_image(image_hw3, class_name, models, cfg, text)
    return make_prediction(class_name, image_hw3, r.sample_score, r.pixel_map_hw, threshold, pixel_threshold, r)

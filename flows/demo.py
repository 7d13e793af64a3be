"""``zsad demo``: synthetic data, tiny random models, the whole cached pipeline, a table, heatmaps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsad.stores import open_store, unit_key
from zsad.tasks.aggregate import pixel_map
from zsad.tasks.fused import ImageFacts
from zsad.tasks.plan import plan_stages
from zsad.config import AggregateConfig
from zsad.datasets import SyntheticSpec, known_ground_truth, load_image, write_synthetic
from zsad.plots import prediction_panel, save_png

from .configs import load_pipeline_config
from .evaluate import evaluate_records
from .precompute import PrecomputeResult, run_precompute
from .command_requests import DemoRequest, EvaluateRequest, PrecomputeRequest, ReportRequest

# one cache: no normal images / a few / the batch / MuSc / AnomalyDINO few-shot and batched (a tiny batch: quantile 0.1)
DEMO_MODES = "mode=zero-shot,few-shot,mutual,musc,anomalydino,anomalydino-batched;quantile=0.1"
DEMO_CONFIG = "dino-tiny"  # the tiny models, MuSc's tokens of the tiny CLIP, AnomalyDINO's of a tiny DINOv2
DEMO_SWEEP = f"{DEMO_MODES};fusion=harmonic,geometric;top_fraction=0.25,1"  # the report's variants page: 12


def write_heatmaps(store: str, dataset: str, config: str, out_dir: Path, agg: AggregateConfig = AggregateConfig()
                   ) -> list[Path]:
    """One panel per test image in anomalib's layout: image with its ground truth | heatmap on a
    fixed [0, 1] scale with a colour bar | (no pixel threshold: the demo's maps are noise)."""
    plan = plan_stages(load_pipeline_config(config))
    st, vh = open_store(store), plan.aggregate_hash(agg)
    written = []
    for unit in st.list_units("aggregate", vh, dataset):
        image = st.read_attrs(unit_key("image", plan.hashes["image"], unit))
        pixel = pixel_map(st, plan, agg, unit)  # variants store no maps unless asked
        img = load_image(image["path"])
        mask = known_ground_truth(image["label"], image["mask_path"], img.shape[:2], ImageFacts.from_attrs(image).orientation)
        score = st.read_attrs(unit_key("aggregate", vh, unit))["sample_score"]
        title = f"{unit.class_name}/{unit.image_id}: score {score:.3f}"
        written.append(save_png(prediction_panel(img, pixel, title, gt_mask_hw=mask),
                                out_dir / unit.class_name / f"{unit.image_id}.png"))
    return written


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: the first precompute and the cached re-run (which computes nothing),
    the metrics per variant, the heatmaps drawn, the report and the seconds it took."""

    out: str
    precompute: PrecomputeResult
    cached_rerun: PrecomputeResult
    results: dict[str, Any]
    heatmaps: int
    report: str | None
    seconds: float
    exit_code: int = 0

    def show(self) -> None:
        pre, again = self.precompute, self.cached_rerun
        print(f"\nzsad demo: {pre.n_images} images, {self.heatmaps} heatmaps in {self.out}/heatmaps, metrics in "
              f"{self.out}/results, report {self.report}; cached re-run wrote {again.units_written} units and "
              f"loaded {again.models_loaded} models; {self.seconds:.1f} s. (Tiny random-weight models: the numbers "
              "show the pipeline runs, not accuracy.)")


def run_demo(request: DemoRequest, *, report: bool = True) -> DemoResult:
    """Write a synthetic data set, precompute with tiny models (test images, and the train split's
    normal images as few-shot references, with patch tokens, MuSc's and AnomalyDINO's tokens),
    evaluate the six detectors (MuSc and AnomalyDINO beside the seed), draw heatmaps, and report a sweep."""
    out_dir = Path(request.out)
    data, store = out_dir / "data", str(out_dir / "store.zarr")
    t0 = time.perf_counter()
    if not (data / "pill").is_dir():
        write_synthetic(data, SyntheticSpec(image_size=request.image_size, n_train=4))  # 4 references per class
    test = PrecomputeRequest(dataset="synthetic", root=str(data), store=store, config=DEMO_CONFIG, patches=True)
    first = run_precompute(test)
    run_precompute(test.replace(split="train", progress=False))
    second = run_precompute(test.replace(progress=False))
    results = evaluate_records(EvaluateRequest(store=store, dataset="synthetic", config=DEMO_CONFIG,
                                               variants=DEMO_MODES, out_dir=str(out_dir / "results")))
    heatmaps = write_heatmaps(store, "synthetic", DEMO_CONFIG, out_dir / "heatmaps")
    report_path = None
    if report:
        from .report import build_report
        report_path = build_report(ReportRequest(store=store, dataset="synthetic", config=DEMO_CONFIG,
                                                 out=str(out_dir / "report"), variants=DEMO_SWEEP))
    return DemoResult(request.out, first, second, results, len(heatmaps), str(report_path) if report_path else None,
                      time.perf_counter() - t0)

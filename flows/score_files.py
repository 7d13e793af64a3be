"""Scoring files, the step ``predict``, the nightly flow, the line service and ``watch`` share:
which files are new (``new_files``), the one variant a request scores (``one_variant``), the
precompute and aggregation of exactly those files (``score_files``), a scored file's row
(``scored_row``) and panel (``unit_panel``). Plain functions: nothing here imports Prefect.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsad.config import AggregateConfig
from zsad.datasets import DatasetError, Sample, image_files, image_ids, load_image, scan_folder
from zsad.detectors import DETECTORS, PATCH_STAGE
from zsad.plots import save_png
from zsad.predict import panel_png
from zsad.stages import stage
from zsad.stores import Unit, open_store, unit_key
from zsad.stores.schema import PIXEL_MAP
from zsad.sweep import expand, parse_axes
from zsad.tasks.failures import Failure
from zsad.tasks.plan import plan_stages
from zsad.tasks.image import registered
from zsad.thresholds import decide
from zsad.variants import FewShot

from .aggregate import run_variants
from .command_requests import AggregateRequest, FilesRequest, PrecomputeRequest
from .configs import load_pipeline_config, variant_label
from .precompute import run_precompute
from .references import cache_references, reference_name
from .thresholds import Decision

PATCHES_SWITCH = stage(PATCH_STAGE).opt_in  # the PipelineConfig switch of the patch tokens


def new_files(root: str, class_name: str, store: str, config: str, name: str) -> tuple[list[Path], int]:
    """Images under ``root`` not yet registered in the store with their current size and mtime."""
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: inspection folder does not exist")
    files = [f.resolve() for f in image_files(root)]
    st, image_hash = open_store(store), plan_stages(load_pipeline_config(config)).hashes["image"]
    fresh = []
    for f, i in zip(files, image_ids([f.as_posix() for f in files])):
        if not registered(st, image_hash, Unit(name, class_name, "test", i), str(f)):
            fresh.append(f)
    return fresh, len(files)


@dataclass(frozen=True)
class Scored:
    """What ``score_files`` did: ``items`` are (sample, its unit or None if it failed)."""

    items: list[tuple[Sample, Unit | None]]
    errors: list[Failure]
    skipped: list[Failure]
    variant_hash: str


def collect_files(paths: list[str]) -> tuple[list[Path], list[Failure], list[Failure]]:
    """Files named, and image files inside folders named: ``(files, errors, skipped)``. A path
    that does not exist is an error; a folder's non-image, hidden or dangling files are skipped."""
    files, errors, skipped = [], [], []
    for p in map(Path, paths):
        if p.is_dir():
            found, other = scan_folder(p)
            if not found:
                errors.append(Failure.of(None, "input", str(p), f"{p}: no image files in this folder"))
            files += found
            skipped += [Failure.of(None, "input", f, why) for f, why in other]
        elif p.is_file():
            files.append(p)
        else:
            errors.append(Failure.of(None, "input", str(p), f"{p}: no such file or folder"))
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, errors, skipped


@dataclass(frozen=True)
class ResolvedVariant:
    """The one variant a request scores, resolved once where the request enters (CLI, HTTP,
    a watched folder) and carried typed: the text it came as, the few-shot reference folder, its
    config (``one_variant``), its hash under the pipeline config and its label."""

    text: str
    reference: str | None
    config: AggregateConfig
    variant_hash: str
    label: str


@functools.lru_cache(maxsize=256)
def resolve_variant(text: str, reference: str | None, name: str, pipeline_config: str) -> ResolvedVariant:
    """``text`` (with ``reference``) as the variant a request of data set ``name`` scores under
    pipeline config ``pipeline_config``: parsed, checked and hashed once (a ``ValueError`` naming
    the fault otherwise)."""
    agg = one_variant(text, reference, name)
    return ResolvedVariant(text, reference, agg, plan_stages(load_pipeline_config(pipeline_config)).aggregate_hash(agg),
                           variant_label(agg))


def one_variant(variant: str, reference: str | None = None, name: str = "predict") -> AggregateConfig:
    """The one variant ``predict`` scores. With ``reference`` (a folder of normal images of the
    class) the folder is cached as data set ``{name}-ref-{digest of their paths, sizes and times}``
    (``zsad.flows.references``), so other references make another variant (with its own
    thresholds), and the variant draws its references from it: a detector that takes references
    by its fields' ``with_reference`` (WinCLIP+ few-shot: all of the folder's images; AnomalyDINO:
    its ``shots`` by sorted file name, as the official code draws from ``train/good``); a
    zero-shot variant becomes WinCLIP+ few-shot against the whole folder."""
    axes = parse_axes(variant)  # the values are checked; the grid is not built before it is known to be one
    many = {k: len(v) for k, v in axes.items() if len(v) > 1}
    if many:
        raise ValueError(f"scores one variant; {variant!r} gives {', '.join(f'{k} {n} values' for k, n in many.items())}"
                         f" ({math.prod(many.values())} variants): give one value per field")
    agg = expand(axes)[0]
    if reference is None:
        return agg
    if agg.detector.together:
        raise ValueError(f"--reference gives few-shot references; a {agg.mode} variant compares the images scored "
                         "with each other and takes none: drop --reference or use mode=few-shot")
    patch = agg.patch if agg.detector.takes_reference else FewShot()
    return agg.with_patch(patch.with_reference(reference_name(reference, name)))


def score_files(request: FilesRequest, paths: tuple[str, ...], agg: AggregateConfig) -> Scored:
    """Precompute what is missing and aggregate variant ``agg`` (``one_variant``) for the given
    files (few-shot against the images of folder ``request.reference`` when given; a mutual
    variant compares the files with each other)."""
    r = request
    if r.against is not None and not agg.detector.against_batch:
        able = ", ".join(d.name for d in DETECTORS if d.against_batch)
        raise ValueError(f"--against scores new images against a cached batch ({able}); {variant_label(agg)!r} is "
                         f"{agg.mode}: use --variant mode={able.split(',')[0]}")
    cfg = load_pipeline_config(r.config, device=r.device,
                               patches=True if agg.detector.opt_in == PATCHES_SWITCH else None)
    vh = plan_stages(cfg).aggregate_hash(agg)
    files, errors, skipped = collect_files(list(paths))
    if r.reference is not None:
        errors += cache_references(r.reference, [r.class_name], r.store, cfg, agg.patch.reference, r.progress)
    ids = image_ids([f.as_posix() for f in files])
    samples = [Sample.unlabelled(f, r.class_name, i) for f, i in zip(files, ids)]
    units = [Unit.of(r.name, s) for s in samples]  # checks the names before any work
    done: set[Unit] = set()
    if samples:
        pre = run_precompute(PrecomputeRequest(store=r.store, name=r.name, progress=r.progress), samples=samples,
                             cfg=cfg)
        errors += pre.failed
        done = set(pre.done)
        if done and r.against is not None:  # MuSc: each file against the cached batch
            _against(r, cfg, agg, sorted(done))
        elif done:  # maps saved for the panels
            run_variants(AggregateRequest(store=r.store, dataset=r.name, config=r.config, configs=(agg,),
                                          units=tuple(sorted(done)), save_maps=True))
    return Scored([(s, u if u in done else None) for s, u in zip(samples, units)], errors, skipped, vh)


def _against(r: FilesRequest, cfg, agg: AggregateConfig, units: list[Unit]) -> None:
    """``--against``: the files scored as new members of the cached batch of their class."""
    from zsad.tasks.musc_new import score_against
    st, plan = open_store(r.store), plan_stages(cfg)
    batch = [u for u in st.list_units("musc_tokens", plan.hashes["musc_tokens"], r.against, [r.class_name])
             if u.split != "train"]
    if not batch:
        raise ValueError(f"{r.store}: data set {r.against!r} has no cached MuSc tokens of class {r.class_name!r}; "
                         f"run `zsad precompute --name {r.against} --config {r.config} ...` first")
    score_against(st, plan, agg, units, batch, r.against, device=r.device or "cpu")


def error_row(err: Failure, class_name: str, status: str = "error") -> dict[str, Any]:
    return {"path": err.path, "class": class_name, "status": status, "stage": err.stage, "error": err.error}


def scored_row(st, sample: Sample, unit: Unit, vh: str, decision: Decision, png_path: Path | None,
                label: str) -> dict[str, Any]:
    """A scored file's ``scores.csv`` row (the verdict at ``decision``), its panel saved at
    ``png_path`` when given."""
    key = unit_key("aggregate", vh, unit)
    score = float(st.read_attrs(key)["sample_score"])
    verdict = decide(score, decision.image)
    row = {"path": sample.path, "class": sample.class_name, "status": "scored", "sample_score": score,
           "decision": verdict, **decision.as_row(), "variant": label, "variant_hash": vh, "heatmap": ""}
    if png_path is not None:
        row["heatmap"] = str(save_png(unit_panel(st, sample, unit, vh, decision), png_path))
    return row


def unit_panel(st, sample: Sample, unit: Unit, vh: str, decision: Decision) -> bytes:
    """The prediction panel (PNG bytes) of a scored file: its image, the map stored by
    ``score_files`` and the verdict at ``decision``'s thresholds, titled by the file's name."""
    key = unit_key("aggregate", vh, unit)
    return panel_png(image_hw3=load_image(sample.path), pixel_map_hw=st.read_array(key, PIXEL_MAP),
                     class_name=sample.class_name, score=float(st.read_attrs(key)["sample_score"]),
                     threshold=decision.image, pixel_threshold=decision.pixel, caption=Path(sample.path).name)

"""One frozen request per command: its fields are the command's parameters, declared once
(how a field is declared: ``zsad.flows.request_fields``). The command line is generated from
the fields (flag, help, default, the core's own choices);
the Prefect flow takes the request as its one parameter (``prefect.yaml``: a mapping). Checks of
a field or a pair of fields are in ``__post_init__``: a bad request fails before any work, whichever
way it came. A field without an ``option`` is not on the command line.

Example:
    >>> r = AggregateRequest(store="s.zarr", classes=["pcb1"])
    >>> r.classes, r.variants, [f.name for f in cli_fields(AggregateRequest)][:3]
    (('pcb1',), 'seed', ['store', 'dataset', 'config'])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from zsad.config import PRECISIONS, SamGeneratorConfig
from zsad.datasets import DATASET_KINDS
from zsad.stores import Unit
from zsad.thresholds import AUTO, ThresholdSpec
from zsad.variants import FUSIONS, PROTOCOLS, AggregateConfig

from .cli_args import fraction, fusions_arg, name_arg, positive_int
from .request_fields import STORE, Request, cli_fields  # noqa: F401 - re-exported: the requests' module names them all
from .request_fields import (
    check_against_reference,
    class_option,
    classes_option,
    config_option,
    dask_option,
    device_option,
    name_option,
    option,
    reference_option,
    shared_option,
    store_option,
    threshold_option,
    variant_option,
)

SPLITS = ("test", "train")
SCHEDULERS = ("auto", "threads", "processes", "synchronous")
CACHE_ACTIONS = ("list", "size", "prune")
WEIGHTS_ACTIONS = ("list", "fetch")


@dataclass(frozen=True, kw_only=True)
class PrecomputeRequest(Request):
    """``zsad precompute``: every expensive stage of a data set, cached."""

    dataset: str = option("synthetic", "--dataset", "the data set's layout (its name in the store: --name)",
                          choices=DATASET_KINDS)
    root: str | None = option(None, "--root", "data set folder", required=True)
    store: str = store_option()
    config: str = config_option()
    classes: tuple[str, ...] | None = classes_option()
    name: str | None = option(None, "--name", "name of the data set in the store (default: its kind)",
                              type=name_arg)
    shard_size: int = option(32, "--shard-size", "images per shard (a task; models load once per process)",
                             type=positive_int)
    device: str | None = device_option()
    progress: bool = True
    verify: bool = option(False, "--verify", "read every unit's completeness marker and chunks instead of trusting "
                          "the unit index (object storage)", action="store_true")
    patches: bool | None = option(None, "--patches", "also cache CLIP patch tokens (few-shot and mutual modes; "
                                  "~1.6 MB per tile with the paper's CLIP)", action="store_const", const=True)
    split: str = option("test", "--split", "train: cache the normal training images (references of the few-shot "
                        "mode)", choices=SPLITS)
    fusions: tuple[str, ...] = option((), "--fusions", "also build the fused maps of these fusion methods (e.g. "
                                      "harmonic,geometric; aggregation otherwise builds them on first need)",
                                      type=fusions_arg)
    dask_address: str | None = dask_option()
    shared_path: bool = shared_option()
    images_per_batch: int | None = option(None, "--images-per-batch", "GPU: tiles of N images per CLIP/CLIPSeg "
                                          "batch (default 1: exact; >1 gets its own cache)", type=positive_int)
    precision: str | None = option(None, "--precision", "CLIP/CLIPSeg under autocast (default fp32; others get "
                                   "their own cache)", choices=PRECISIONS)
    sam_options: str | None = option(None, "--sam-options", "zsad's SAM generator options, comma-separated: shared "
                                     "(the CPU lever), batch=auto|N (GPU: points per decoder batch), bf16, compile; "
                                     "each gets its own cache (default none: stock's masks)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sam_options is not None:
            SamGeneratorConfig().with_options(self.sam_options)  # a clear error before any work
        if self.shard_size < 1:
            raise ValueError(f"shard size must be a positive number of images, got {self.shard_size}")
        bad = [f for f in self.fusions if f not in FUSIONS]
        if bad:
            raise ValueError(f"fusions are {', '.join(FUSIONS)}, got {bad}")

    @property
    def store_name(self) -> str:
        """The data set's name in the store: ``name``, else its kind."""
        return self.name or self.dataset


@dataclass(frozen=True, kw_only=True)
class AggregateRequest(Request):
    """``zsad aggregate``: scores (and maps when asked) of variants, from the store only.

    ``configs`` (not on the command line) gives the variants as configs instead of ``variants``'
    text; ``units`` restricts the run to these images; ``evaluate`` streams labelled images into
    metric accumulators; ``pixel_size`` resizes maps and masks first; ``read_only`` writes nothing."""

    HIDDEN: ClassVar[tuple[str, ...]] = ("read_only", "device", "pixel_size", "protocol")

    store: str = store_option()
    dataset: str = option("synthetic", "--dataset", "data set name in the store (default: its kind)")
    config: str = config_option()
    variants: str | None = option("seed", "--variants", "'seed', 'grid' or a sweep "
                                  "'fusion=harmonic,geometric;top_fraction=.25,.5'")
    classes: tuple[str, ...] | None = classes_option()
    scheduler: str = option("auto", "--scheduler", "auto = threads (the hot loops release the GIL; processes "
                            "measured slower)", choices=SCHEDULERS)
    dask_address: str | None = dask_option()
    shared_path: bool = shared_option()
    chunk: int | None = option(None, "--chunk", "images per Dask task (default: 4 tasks per worker, at most 64 "
                               "images)", type=positive_int)
    overwrite: bool = option(False, "--overwrite", "recompute units that are already complete", action="store_true")
    save_maps: bool = option(False, "--save-maps", "also store each image's full-size map (float16)",
                             action="store_true")
    shots: int | None = option(None, "--shots", "few-shot: K normal reference images per class from the data set's "
                               "train split (cached with `zsad precompute --split train --patches`); adds "
                               "mode=few-shot when --variants names no mode", type=positive_int)
    shot_seed: int | None = option(None, ("--shot-seed", "--seed"), "few-shot: which K images are drawn (default 0)",
                                   type=int)
    reference: str | None = reference_option("few-shot against the normal images of DIR/<class>/ (or of DIR itself for "
                                       "one --classes) instead of the data set's train split; all of them unless "
                                       "--shots")
    read_only: bool = option(False, "--read-only", "write nothing to the store (read-only access to a shared "
                             "cache): metrics and thresholds only in --out", action="store_true")
    device: str | None = option(None, "--device", "cuda: paste and count the maps of an evaluation on the GPU "
                                "(default: the host)")
    pixel_size: int | None = option(None, "--pixel-size", "evaluate pixels at this square size (default: full)",
                                    type=positive_int)
    protocol: str = option("zsad", "--protocol", "MuSc variants: zsad = maps and masks at each image's size; musc = "
                           "at the token stage's square size, masks as MuSc resizes them (its README's rows)",
                           choices=PROTOCOLS)
    configs: tuple[AggregateConfig, ...] | None = None
    units: tuple[Unit, ...] | None = None
    evaluate: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.read_only and self.save_maps:
            raise ValueError("--save-maps writes maps into the store; it cannot be combined with --read-only")
        if self.read_only and self.reference:
            raise ValueError("--reference caches the folder's images into the store; with --read-only cache them "
                             "first (a run without --read-only)")
        few = self.shots is not None or self.shot_seed is not None or self.reference is not None
        if few and self.variants not in (None, "", "seed", "grid") and "=" not in self.variants:
            raise ValueError(f"--shots/--shot-seed extend a sweep such as 'mode=few-shot;fusion=harmonic', "
                             f"not {self.variants!r}; or write shots=K;shot_seed=S into --variants")


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest(AggregateRequest):
    """``zsad evaluate``: metrics per class and mean; stores F1-max and FPR thresholds."""

    HIDDEN: ClassVar[tuple[str, ...]] = ("chunk", "overwrite")

    out_dir: str = option("zsad-results", "--out", "folder for metrics.json, metrics.csv and tables.md")
    fpr: float | None = option(0.01, "--fpr", "also store thresholds at this false-alarm rate on normal images",
                               type=fraction)
    root: str | None = option(None, "--root", "with --dataset visa|mvtec: precompute this data set first")
    echo: bool = True
    evaluate: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.root and self.read_only:
            raise ValueError("--root precomputes into the store; with --read-only run it without --root")


@dataclass(frozen=True, kw_only=True)
class ScoringRequest(Request):
    """How files are scored, declared once for every command that scores files (``predict``,
    ``calibrate``, ``serve``, ``watch``): the store and config, the one variant, the data set name
    the files get in the store, the device and, few-shot, a folder of normal references (or,
    MuSc, a cached batch to score against)."""

    store: str = store_option()
    config: str = config_option()
    variant: str = variant_option()
    name: str = name_option()
    device: str | None = device_option()
    reference: str | None = reference_option("few-shot: a folder of normal images of the class to compare the "
                                             "images' patches with")
    against: str | None = option(None, "--against", "MuSc: score each file against the cached test images of the "
                                 "class in this data set of the store (a batch), not against each other")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_against_reference(self.against, self.reference)

    def scoring(self) -> dict:
        """Its scoring fields (what a ``FilesRequest`` made from it takes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ScoringRequest)}


@dataclass(frozen=True, kw_only=True)
class FilesRequest(ScoringRequest):
    """What scoring files needs (``predict``, ``calibrate``): their class and how they are scored."""

    class_name: str = class_option()
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class PredictRequest(FilesRequest):
    """``zsad predict``: score images or folders: ``scores.csv``, a heatmap panel per image."""

    paths: tuple[str, ...] = option((), "paths", "image files and/or folders (searched recursively)", nargs="+")
    threshold: ThresholdSpec = threshold_option("auto", "--threshold", "auto (stored F1-max, else stored FPR), "
                                                "f1, fpr, none, or a number")
    pixel_threshold: ThresholdSpec | None = threshold_option(None, "--pixel-threshold", "auto (stored), f1, fpr, "
                                                             "none, or a number (mask outline)")
    out: str = option("zsad-predict", "--out", "folder for scores.csv and heatmaps/")
    heatmaps: bool = True
    echo: bool = True


@dataclass(frozen=True, kw_only=True)
class CalibrateRequest(FilesRequest):
    """``zsad calibrate``: store thresholds at a false-alarm rate from known-good images."""

    good: tuple[str, ...] = option((), "--good", "known-good image files and/or folders", nargs="+", required=True)
    fpr: float = option(0.01, "--fpr", "target false-alarm rate on good images", type=fraction)


@dataclass(frozen=True, kw_only=True)
class ReportRequest(Request):
    """``zsad report``: a self-contained HTML report of a run."""

    store: str = store_option()
    config: str = config_option()
    dataset: str = option("synthetic", "--dataset", "data set name in the store (default: its kind)")
    out: str = option("zsad-report", "--out", "folder of the report's pages")
    variants: str | None = option(
        "seed",
        ("--variants", "--variant"),
        "'seed', 'grid', a sweep 'fusion=harmonic,geometric', "
        "label(s) or stored hash(es); several give a variants page ranking them",
    )
    results: str | None = option(None, "--results", "rank the variants of this metrics.json (from `zsad evaluate`) "
                                 "instead of recomputing their metrics")


@dataclass(frozen=True, kw_only=True)
class CacheRequest(Request):
    """``zsad cache``: list, size or prune the store."""

    action: str = option(dataclasses.MISSING, "action", "list, size or prune", choices=CACHE_ACTIONS)
    store: str = store_option()
    keep: tuple[str, ...] = option((), "--keep", "prune: configs whose stages are kept", nargs="*")
    variants: str | None = option(None, "--variants", "prune: drop these aggregate variants only (hashes, labels or "
                                  "a sweep like fusion=geometric)")
    with_thresholds: bool = option(False, "--with-thresholds", "prune --variants: drop their thresholds too",
                                   action="store_true")
    dry_run: bool = option(False, "--dry-run", "say what prune would delete, delete nothing", action="store_true")


@dataclass(frozen=True, kw_only=True)
class DemoRequest(Request):
    """``zsad demo``: synthetic data and tiny models through the whole pipeline."""

    out: str = option("zsad-demo", "--out", "folder of the demo's data, store, heatmaps, results and report")
    image_size: int = option(192, "--image-size", "side of the synthetic images (pixels)", type=positive_int)


@dataclass(frozen=True, kw_only=True)
class WeightsRequest(Request):
    """``zsad weights``: the expected weight files, their sha256 and where they are looked for."""

    action: str = option(dataclasses.MISSING, "action", "list or fetch", choices=WEIGHTS_ACTIONS)
    key: str | None = option(None, "--key", "fetch: which file (see `zsad weights list`)")
    dest: str | None = option(None, "--dest", "fetch: the folder to put it in")
    config: str | None = option(None, "--config", "list: only the files this config's models need")


@dataclass(frozen=True, kw_only=True)
class NightlyRequest(Request):
    """The ``nightly`` flow (``prefect.yaml``): score the new images of an inspection folder."""

    root: str
    class_name: str
    store: str = STORE
    config: str = "paper"
    # text in a deployment's JSON parameters (``prefect.yaml``), a ThresholdSpec once the request is made
    threshold: ThresholdSpec | str = dataclasses.field(default=AUTO, metadata={"parse": ThresholdSpec.parse})
    variant: str = "seed"
    name: str = "line"
    out_dir: str = "zsad-runs"
    device: str | None = None
    reference: str | None = None
    against: str | None = None  # MuSc: the store's data set whose cached images of the class are the batch

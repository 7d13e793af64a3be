"""One declaration per command: the CLI's options are generated from its flow's signature.

A flow's parameters (name, default) are the declaration; ``OPTIONS`` says how the command line
spells and checks each parameter name, once for every flow that has it. ``add_flow_args`` adds
one option per parameter, ``flow_kwargs`` reads them back, and ``call_flow`` runs the flow
under Prefect or, without an API, as its plain function with the very same arguments: the two
paths cannot drift apart, and a new flow parameter without an entry here is an error at once.

Example:
    >>> import argparse
    >>> from prefect import flow
    >>> @flow
    ... def demo_flow(store: str = "s.zarr", shard_size: int = 32): ...
    >>> p = argparse.ArgumentParser()
    >>> add_flow_args(p, demo_flow)
    >>> sorted(flow_kwargs(p.parse_args(["--shard-size", "8"]), demo_flow).items())
    [('shard_size', 8), ('store', 's.zarr')]
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .cli_args import CONFIG_HELP, STORE_HELP, _positive_int, fraction, fusions_arg, storage_options_option


@dataclass(frozen=True)
class Option:
    """How the command line spells one flow parameter: its flag and ``argparse`` keywords."""

    flag: str
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)


OPTIONS: dict[str, Option] = {
    "store": Option("--store", STORE_HELP),
    "config": Option("--config", CONFIG_HELP),
    "dataset": Option("--dataset", "data set name in the store (default: its kind)"),
    "root": Option("--root", "data set folder", {"required": True}),
    "name": Option("--name", "name of the data set in the store (default: its kind)"),
    "classes": Option("--classes", "only these classes", {"nargs": "*"}),
    "shard_size": Option("--shard-size", "images per shard (a task; models load once per process)",
                         {"type": _positive_int}),
    "images_per_batch": Option("--images-per-batch", "GPU: tiles of N images per CLIP/CLIPSeg batch (default 1: "
                               "exact; >1 gets its own cache)", {"type": _positive_int}),
    "precision": Option("--precision", "CLIP/CLIPSeg under autocast (default fp32; others get their own cache)",
                        {"choices": ["fp32", "bf16", "fp16"]}),
    "verify": Option("--verify", "read every unit's completeness marker and chunks instead of trusting the unit "
                     "index (object storage)", {"action": "store_true"}),
    "device": Option("--device", "cpu, cuda, cuda:1 ... (precompute default: the config's; evaluate: cuda pastes "
                     "and counts the maps on the GPU)"),
    "patches": Option("--patches", "also cache CLIP patch tokens (few-shot and mutual modes; ~1.6 MB per tile with "
                      "the paper's CLIP)", {"action": "store_const", "const": True}),
    "split": Option("--split", "train: cache the normal training images (references of the few-shot mode)",
                    {"choices": ["test", "train"]}),
    "fusions": Option("--fusions", "also build the fused maps of these fusion methods (e.g. harmonic,geometric; "
                      "aggregation otherwise builds them on first need)", {"type": fusions_arg}),
    "dask_address": Option("--dask-address", "run on this dask.distributed cluster (README: 'More than one "
                           "machine')", {"metavar": "tcp://HOST:8786"}),
    "shared_path": Option("--shared-path", "the local --store path is mounted at the same absolute path on every "
                          "Dask worker (otherwise a cluster needs object storage)", {"action": "store_true"}),
    "variants": Option("--variants", "'seed', 'grid' or a sweep 'fusion=harmonic,geometric;top_fraction=.25,.5'"),
    "scheduler": Option("--scheduler", "auto = threads (the hot loops release the GIL; processes measured slower)",
                        {"choices": ["auto", "threads", "processes", "synchronous"]}),
    "chunk": Option("--chunk", "images per Dask task (default: 4 tasks per worker, at most 64 images)",
                    {"type": _positive_int}),
    "overwrite": Option("--overwrite", "recompute units that are already complete", {"action": "store_true"}),
    "save_maps": Option("--save-maps", "also store each image's full-size map (float16)", {"action": "store_true"}),
    "out_dir": Option("--out", "folder for metrics.json, metrics.csv and tables.md"),
    "pixel_size": Option("--pixel-size", "evaluate pixels at this square size (default: full)",
                         {"type": _positive_int}),
    "fpr": Option("--fpr", "also store thresholds at this false-alarm rate on normal images", {"type": fraction}),
    "read_only": Option("--read-only", "write nothing to the store (read-only access to a shared cache): metrics "
                        "and thresholds only in --out", {"action": "store_true"}),
}
CLI_ONLY = ("progress",)  # flow parameters the command line does not offer (a terminal always shows progress)


def _parameters(flow: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(getattr(flow, "fn", flow)).parameters)


def add_flow_args(parser: argparse.ArgumentParser, flow: Any, overrides: dict[str, dict[str, Any]] | None = None
                  ) -> None:
    """One option per parameter of ``flow`` (its default is the option's default); ``overrides``:
    per parameter, ``argparse`` keywords that differ for this command (e.g. ``choices``)."""
    for name, param in _parameters(flow).items():
        if name in CLI_ONLY:
            continue
        if name not in OPTIONS:
            raise TypeError(f"flow {getattr(flow, 'name', flow)!r} has a parameter {name!r} that flows/commands.py's "
                            "OPTIONS does not declare; add how the command line spells it there")
        opt = OPTIONS[name]
        kwargs = {**opt.kwargs, **(overrides or {}).get(name, {})}
        if not kwargs.get("required"):
            kwargs.setdefault("default", param.default)
        kwargs.setdefault("help", opt.help)
        parser.add_argument(opt.flag, dest=name, **kwargs)
    if "store" in _parameters(flow):
        storage_options_option(parser)


def flow_kwargs(args: argparse.Namespace, flow: Any, **replaced: Any) -> dict[str, Any]:
    """The parsed options of ``flow``'s parameters (``replaced`` wins), as keyword arguments."""
    names = [n for n in _parameters(flow) if n not in CLI_ONLY and hasattr(args, n)]
    return {**{n: getattr(args, n) for n in names}, **replaced}


def call_flow(flow: Any, kwargs: dict[str, Any], orchestrated: bool) -> Any:
    """``flow(**kwargs)`` as a Prefect flow run (``orchestrated``), else its plain function."""
    fn: Callable[..., Any] = flow if orchestrated else flow.fn
    return fn(**kwargs)

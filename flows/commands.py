"""Every ``zsad`` command, declared once: its request (``zsad.flows.command_requests``) and the function
that serves it (a Prefect flow for ``precompute``, ``aggregate`` and ``evaluate``). The command
line's options are generated from the request's fields; the parsed options become the request;
the request goes to the flow's plain function or, with ``--prefect``, to the flow itself: the
two paths run the same code and cannot drift apart.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_request_args(p, CacheRequest)
    >>> request_of(p.parse_args(["prune", "--keep", "paper", "--dry-run"]), CacheRequest)
    CacheRequest(action='prune', store='zsad-store.zarr', keep=('paper',), variants=None, with_thresholds=False, dry_run=True)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .cli_args import prefect_arg, storage_options_option
from .results import Failures, Json, Printed, Shown, as_json, as_printed
from .command_requests import (AggregateRequest, CacheRequest, CalibrateRequest, DemoRequest, EvaluateRequest,
                       PrecomputeRequest, PredictRequest, ReportRequest, Request, WeightsRequest, cli_fields)
from zsad.serve.inline_requests import ServeRequest, WatchRequest


@dataclass(frozen=True)
class Command:
    """One command: ``request`` (its options), ``target`` (``package.module:function`` under
    ``zsad``, taking the request) and ``flow`` (``module:flow`` in ``zsad.flows``, the Prefect flow
    running the same function; ``--prefect`` runs it) and ``shown`` (how the command line shows
    what it returned: ``zsad.flows.results``)."""

    help: str
    request: type[Request]
    target: str
    flow: str | None = None
    shown: Callable[[Any], Shown] = as_json  # how the command line shows the result

    def function(self, orchestrated: bool = False) -> Callable[[Any], Any]:
        """What runs the request: the flow under Prefect when ``orchestrated``, else the plain function."""
        module, name = (f"flows.{self.flow}" if orchestrated and self.flow else self.target).split(":")
        return getattr(importlib.import_module(f"zsad.{module}"), name)


COMMANDS: dict[str, Command] = {
    "demo": Command("synthetic data + tiny models: the whole pipeline, a table, heatmaps, a report", DemoRequest,
                    "flows.demo:run_demo", shown=lambda out: out),
    "precompute": Command("compute and cache every expensive stage of a data set", PrecomputeRequest,
                          "flows.precompute:run_precompute",
                          flow="prefect_flows:precompute", shown=lambda out: out),
    "predict": Command("score images or folders: scores.csv, a heatmap panel per image", PredictRequest,
                       "flows.predict:run_predict", shown=as_printed),
    "calibrate": Command("store thresholds at a false-alarm rate from known-good images", CalibrateRequest,
                         "flows.predict:run_calibrate",
                         shown=lambda out: Failures(out, "calibrate")),
    "aggregate": Command("scores and maps of variants, from the store only (Dask)", AggregateRequest,
                         "flows.aggregate:run_aggregate",
                         flow="prefect_flows:aggregate"),
    "evaluate": Command("metrics per class and mean; stores F1-max and FPR thresholds", EvaluateRequest,
                        "flows.evaluate:evaluate_records",
                        flow="prefect_flows:evaluate", shown=as_printed),
    "report": Command("a self-contained HTML report of a run", ReportRequest, "flows.report:build_report",
                      shown=lambda out: Json({"report": str(out)})),
    "cache": Command("list / size / prune the store", CacheRequest, "flows.cache:run_cache"),
    "serve": Command("a warm HTTP service: POST /v1/predict, a review page, health and metrics", ServeRequest,
                     "serve.run:run_serve", shown=Printed),
    "watch": Command("score each image written into a folder once it is complete", WatchRequest,
                     "serve.watch:run_watch"),
    "weights": Command("expected weight files, their sha256 and where they are looked for", WeightsRequest,
                       "flows.weights_cmd:run_weights"),
}


def add_request_args(parser: argparse.ArgumentParser, cls: type[Request]) -> None:
    """One option per command-line field of request ``cls``: its flag, help, default and the
    ``argparse`` keywords its declaration gives (choices, type, nargs, action)."""
    for f in cli_fields(cls):
        spec = dict(f.metadata["cli"])
        flag = spec.pop("flag")
        flags = (flag,) if isinstance(flag, str) else tuple(flag)
        if f.default is not dataclasses.MISSING and not spec.get("required"):
            spec.setdefault("default", f.default)
        if flags[0].startswith("-"):
            parser.add_argument(*flags, dest=f.name, **spec)
        else:
            spec.pop("required", None)
            parser.add_argument(f.name, metavar=flags[0], **spec)
    if "store" in {f.name for f in dataclasses.fields(cls)}:
        storage_options_option(parser)


def request_of(args: argparse.Namespace, cls: type[Request]) -> Request:
    """The request the parsed options make (fields not on the command line keep their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in cli_fields(cls)})


def add_command(sub: Any, name: str, build: bool) -> None:
    """The sub-parser of command ``name``; its options only when ``build`` (their help imports nothing heavy,
    but a command's own parser is all one invocation needs)."""
    cmd = COMMANDS[name]
    p = sub.add_parser(name, help=cmd.help, description=(cmd.request.__doc__ or "").split("\n")[0])
    if build:
        add_request_args(p, cmd.request)
        if cmd.flow:
            prefect_arg(p)

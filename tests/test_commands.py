"""The command line generated from the requests: one declaration per command, the same request
whichever way it runs (plain function or Prefect flow)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from zsad.config import PRECISIONS
from zsad.datasets import DATASET_KINDS
from zsad.flows.cli import build_parser
from zsad.flows.commands import COMMANDS, add_request_args, request_of
from zsad.flows.command_requests import (SPLITS, AggregateRequest, CacheRequest, EvaluateRequest, PrecomputeRequest,
                                 Request, cli_fields, option)

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"precompute": ["--root", "data"], "predict": ["a.png", "--class", "pill"],
            "calibrate": ["--good", "g", "--class", "pill"], "cache": ["list"], "weights": ["list"],
            "watch": ["incoming", "--class", "pill"]}


def _parse(command: str, *more: str) -> Request:
    argv = [command, *REQUIRED.get(command, []), *more]
    return request_of(build_parser(argv).parse_args(argv), COMMANDS[command].request)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_parses_to_the_requests_default(command):
    cls = COMMANDS[command].request
    got = _parse(command)
    for f in dataclasses.fields(cls):
        if f.name in ("root", "paths", "good", "class_name", "action", "folder"):
            continue  # required: given above
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert getattr(got, f.name) == default, (command, f.name)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_function_and_the_flow_take_the_request_and_nothing_else(command):
    cmd = COMMANDS[command]
    for orchestrated in (False, True):
        fn = cmd.function(orchestrated)
        params = inspect.signature(getattr(fn, "fn", fn)).parameters
        first, *rest = params.values()
        hints = typing.get_type_hints(getattr(fn, "fn", fn))
        assert first.name == "request" and hints["request"] is cmd.request, (command, orchestrated)
        assert all(p.default is not inspect.Parameter.empty and p.kind == p.KEYWORD_ONLY for p in rest), command


def test_a_new_request_field_is_an_option_at_once():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Brand(AggregateRequest):
        brand_new: int = option(3, "--brand-new", "a new knob", type=int)
    p = argparse.ArgumentParser()
    add_request_args(p, Brand)
    req = request_of(p.parse_args(["--brand-new", "7", "--chunk", "2"]), Brand)
    assert (req.brand_new, req.chunk, req.variants) == (7, 2, "seed")
    assert "--brand-new" in p.format_help() and "a new knob" in p.format_help()


def test_choices_are_the_cores_own_tuples():
    p = argparse.ArgumentParser()
    add_request_args(p, PrecomputeRequest)
    by_dest = {a.dest: a for a in p._actions}
    assert tuple(by_dest["dataset"].choices) == DATASET_KINDS
    assert tuple(by_dest["precision"].choices) == PRECISIONS
    assert tuple(by_dest["split"].choices) == SPLITS
    with pytest.raises(SystemExit):
        build_parser(["precompute"]).parse_args(["precompute", "--root", "d", "--fusions", "harmonic,median"])


def test_options_parse_to_the_request():
    req = _parse("aggregate", "--chunk", "16", "--overwrite", "--variants", "fusion=geometric", "--classes", "a", "b")
    assert isinstance(req, AggregateRequest) and not isinstance(req, EvaluateRequest)
    assert (req.chunk, req.overwrite, req.variants, req.classes, req.evaluate) == \
        (16, True, "fusion=geometric", ("a", "b"), False)
    assert _parse("evaluate", "--read-only").read_only and _parse("evaluate").evaluate
    assert _parse("evaluate", "--seed", "2").shot_seed == 2 == _parse("aggregate", "--shot-seed", "2").shot_seed
    assert _parse("report", "--variant", "grid").variants == "grid"  # aliases of the old spellings
    assert _parse("cache", "--keep", "paper", "tiny") == CacheRequest(action="list", keep=("paper", "tiny"))
    with pytest.raises(SystemExit):
        build_parser(["aggregate"]).parse_args(["aggregate", "--chunk", "0"])


def test_aggregate_offers_no_evaluation_option_and_evaluate_no_aggregation_one():
    agg = {f.name for f in cli_fields(AggregateRequest)}
    ev = {f.name for f in cli_fields(EvaluateRequest)}
    assert {"read_only", "pixel_size", "device", "out_dir", "fpr"} & agg == set()
    assert {"chunk", "overwrite"} & ev == set() and {"read_only", "pixel_size", "device", "out_dir", "fpr"} <= ev
    assert {"units", "configs", "evaluate"} & (agg | ev) == set()  # set by code, never typed


def test_a_bad_request_fails_before_any_work_whichever_way_it_came():
    with pytest.raises(ValueError, match="--save-maps.*--read-only"):
        EvaluateRequest(read_only=True, save_maps=True)
    with pytest.raises(ValueError, match="shard size"):
        PrecomputeRequest(shard_size=0)
    with pytest.raises(ValueError, match="--shots/--shot-seed extend a sweep"):
        AggregateRequest(variants="harmonic/top0.25", shots=2)
    assert main_code(["evaluate", "--read-only", "--save-maps"]) == 2


def main_code(argv: list[str]) -> int:
    from zsad.flows.cli import main
    return main(argv)


def test_requests_are_frozen_and_lists_become_tuples():
    r = AggregateRequest(classes=["a"])
    assert r.classes == ("a",) and hash(r.classes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.store = "x"  # type: ignore[misc]
    assert r.replace(chunk=4).chunk == 4 and r.chunk is None


def test_the_default_store_is_written_once():
    found = [p.relative_to(ROOT).as_posix() for d in ("zsad", "flows", "tasks", "stores")
             for p in (ROOT / d).rglob("*.py") if '"zsad-store.zarr"' in p.read_text()]
    assert found == ["flows/request_fields.py"]


def test_the_help_of_other_commands_imports_no_flow():
    code = ("import sys; from zsad.flows.cli import build_parser; build_parser(['cache', 'list']); "
            "bad = [m for m in ('prefect', 'dask', 'torch', 'zarr') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

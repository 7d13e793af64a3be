"""The command line generated from the flows: one declaration, the same arguments either way."""

from __future__ import annotations

import argparse
import inspect

import pytest

from flows.cli import FLOW_COMMANDS, _flow, build_parser
from flows.commands import CLI_ONLY, add_flow_args, flow_kwargs


@pytest.mark.parametrize("command", sorted(FLOW_COMMANDS))
def test_every_flow_parameter_is_an_option_with_the_flows_default(command):
    flow = _flow(command)
    params = {n: p for n, p in inspect.signature(flow.fn).parameters.items() if n not in CLI_ONLY}
    argv = [command] + (["--root", "data"] if command == "precompute" else [])
    kwargs = flow_kwargs(build_parser(argv).parse_args(argv), flow)
    assert set(kwargs) == set(params)
    for name, p in params.items():
        if name not in ("root", "device"):  # root: required on the CLI; evaluate's device: see cli.run
            assert kwargs[name] == p.default, name


def test_a_flow_parameter_the_cli_does_not_know_is_an_error_at_once():
    def flow(store: str = "s.zarr", brand_new: int = 3): ...
    with pytest.raises(TypeError, match="brand_new"):
        add_flow_args(argparse.ArgumentParser(), flow)


def test_options_parse_to_the_flow_arguments():
    argv = ["aggregate", "--chunk", "16", "--overwrite", "--variants", "fusion=geometric", "--classes", "a", "b"]
    kwargs = flow_kwargs(build_parser(argv).parse_args(argv), _flow("aggregate"))
    assert (kwargs["chunk"], kwargs["overwrite"], kwargs["variants"], kwargs["classes"]) == \
        (16, True, "fusion=geometric", ["a", "b"])
    with pytest.raises(SystemExit):
        build_parser(["aggregate", "--chunk", "0"]).parse_args(["aggregate", "--chunk", "0"])


def test_the_help_of_other_commands_imports_no_flow():
    import subprocess
    import sys
    code = ("import sys; from flows.cli import build_parser; build_parser(['cache', 'list']); "
            "bad = [m for m in ('prefect', 'dask', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

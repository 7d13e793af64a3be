"""How a request's fields are declared: ``option`` (a field the command line offers, with its
flag, help and ``argparse`` keywords), the options several commands share (store, config,
classes, device, Dask), ``cli_fields`` and the ``Request`` base (lists become tuples; ``replace``).

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True, kw_only=True)
    ... class Tiny(Request):
    ...     store: str = store_option()
    ...     n: int = 3
    >>> [f.name for f in cli_fields(Tiny)], Tiny(n=4).replace(n=5).n
    (['store'], 5)
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from zsad.thresholds import ThresholdSpec

from .cli_args import CONFIG_HELP, STORE_HELP, name_arg, threshold_arg

STORE = "zsad-store.zarr"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def option(default: Any = dataclasses.MISSING, flag: str | tuple[str, ...] | None = None, help: str = "",
           *, parse: Callable[[str, str], Any] | None = None, **argparse_kwargs: Any):
    """A request field offered on the command line as ``flag`` (several: the first and its aliases;
    a name without ``--``: positional). ``parse(text, flag)``: the typed value of text given to
    the field (from Python or Prefect's JSON; the command line's ``type`` parses it there)."""
    meta = {"cli": {"flag": flag, "help": help, **argparse_kwargs}, "parse": parse}
    return field(default=default, metadata=meta)


def threshold_option(default: str | None, flag: str, help: str):
    """A threshold (``zsad.thresholds.ThresholdSpec``; None: the default of ``resolve_thresholds``)."""
    spec = None if default is None else ThresholdSpec.parse(default, flag)
    return option(spec, flag, help, parse=ThresholdSpec.parse, type=threshold_arg)


def store_option(help: str = STORE_HELP):
    return option(STORE, "--store", help)


def config_option(default: str = "tiny"):
    return option(default, "--config", CONFIG_HELP)


def classes_option():
    return option(None, "--classes", "only these classes", nargs="*", type=name_arg)


def device_option(help: str = "cpu, cuda, cuda:1 ... (default: the config's)"):
    return option(None, "--device", help)


def reference_option(help: str):
    return option(None, "--reference", help, metavar="DIR")


def dask_option():
    return option(None, "--dask-address", "run on this dask.distributed cluster (docs/guide/cluster.md)",
                  metavar="tcp://HOST:8786")


def shared_option():
    return option(False, "--shared-path", "the local --store path is mounted at the same absolute path on every "
                  "Dask worker (otherwise a cluster needs object storage)", action="store_true")


def class_option():
    return option(dataclasses.MISSING, "--class", "the object class (its name makes the prompts)", required=True,
                  type=name_arg)


def check_against_reference(against: str | None, reference: str | None) -> None:
    """``--against`` (MuSc, a cached batch) and ``--reference`` (few-shot) are two ways of scoring; one at most."""
    if against is not None and reference is not None:
        raise ValueError("--against (MuSc, a cached batch) and --reference (few-shot) exclude each other")


def variant_option():
    return option("seed", "--variant", "aggregation variant (one), e.g. 'seed' or 'fusion=geometric'")


def name_option():
    return option("predict", "--name", "data set name these images get in the store", type=name_arg)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of request ``cls`` the command line offers, in declaration order."""
    hidden = getattr(cls, "HIDDEN", ())
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata and f.name not in hidden]


@dataclass(frozen=True, kw_only=True)
class Request:
    """What every request does: lists become tuples (frozen, hashable, the same from a command
    line, Python or Prefect's JSON), and ``replace`` makes a changed copy."""

    HIDDEN: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, parse = getattr(self, f.name), f.metadata.get("parse")
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            elif isinstance(value, (str, int, float)) and parse is not None:  # parsed once, here, from Python or JSON
                object.__setattr__(self, f.name, parse(value, str(f.metadata.get("cli", {}).get("flag", f.name))))

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

"""Argument types of the ``zsad`` command line, and the options that are the command line's own
(``--storage-options``, ``--prefect``) rather than a request's."""

from __future__ import annotations

import argparse
import json

from zsad.thresholds import ThresholdSpec


def name_arg(text: str) -> str:
    """A class or data set name (``zsad.names``: the store's grammar, at most 64 characters)."""
    from zsad.names import TYPED_NAME_MAX, is_name, rule
    if not is_name(text, max_len=TYPED_NAME_MAX):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid name: {rule(TYPED_NAME_MAX)}")
    return text


def threshold_arg(text: str) -> ThresholdSpec:
    """``--threshold``: auto, f1, fpr, none or a finite number (``zsad.thresholds.ThresholdSpec``)."""
    try:
        return ThresholdSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


SECRET_WORDS = ("secret", "password", "token", "key")


def storage_options_arg(text: str) -> str:
    """Check ``--storage-options`` (non-secret fsspec options as JSON); passed on through the
    environment so every task and worker process opens the store the same way."""
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, e.g. '{{\"endpoint_url\": "
                                         f"\"http://127.0.0.1:9000\"}}' ({exc.msg})") from None
    if not isinstance(opts, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got a {type(opts).__name__}")
    secret = [k for k in opts if any(w in k.lower() for w in SECRET_WORDS)]
    if secret:
        raise argparse.ArgumentTypeError(f"{', '.join(secret)}: credentials do not belong on a command line (other "
                                         "users can read it); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or use a "
                                         "profile in ~/.aws")
    return text


def fusions_arg(text: str) -> tuple[str, ...]:
    """``--fusions harmonic,geometric``: fusion method names, checked."""
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    from zsad.variants import FUSIONS
    bad = [n for n in names if n not in FUSIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"fusions are {', '.join(FUSIONS)} (comma-separated), got {text!r}")
    return names


STORE_HELP = "Zarr store: a path or any fsspec URL (s3://bucket/x.zarr)"
CONFIG_HELP = "'paper' (the seed's models), 'tiny' (random, CPU) or a JSON file"


def storage_options_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-options", type=storage_options_arg, default=None,
                   help="fsspec options of a remote store as JSON, e.g. '{\"endpoint_url\": \"http://host:9000\"}' "
                        "(or $ZSAD_STORAGE_OPTIONS); credentials from the AWS_* environment or ~/.aws")


def prefect_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prefect", action="store_true",
                   help="run as a Prefect flow (shown in the UI of the server PREFECT_API_URL names)")

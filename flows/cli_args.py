"""Argument types and shared options of the ``zsad`` command line."""

from __future__ import annotations

import argparse
import json


def _positive_int(text: str) -> int:
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
        raise argparse.ArgumentTypeError(f"fusions are harmonic, arithmetic or geometric (comma-separated), got {text!r}")
    return names


STORE_HELP = "Zarr store: a path or any fsspec URL (s3://bucket/x.zarr)"
CONFIG_HELP = "'paper' (the seed's models), 'tiny' (random, CPU) or a JSON file"


def storage_options_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-options", type=storage_options_arg, default=None,
                   help="fsspec options of a remote store as JSON, e.g. '{\"endpoint_url\": \"http://host:9000\"}' "
                        "(or $ZSAD_STORAGE_OPTIONS); credentials from the AWS_* environment or ~/.aws")


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default="zsad-store.zarr", help=STORE_HELP)
    storage_options_option(p)


def _common(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """The options of the commands that are not flows (predict, calibrate, report)."""
    _store_args(p)
    p.add_argument("--config", default="tiny", help=CONFIG_HELP)
    if dataset:
        p.add_argument("--dataset", default="synthetic", help="data set name in the store (default: its kind)")
        p.add_argument("--classes", nargs="*", default=None, help="only these classes")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--class", dest="class_name", required=True, help="the object class (its name makes the prompts)")
    p.add_argument("--variant", default="seed", help="aggregation variant (one), e.g. 'seed' or 'fusion=geometric'")
    p.add_argument("--name", default="predict", help="data set name these images get in the store")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the config's)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="few-shot: a folder of normal images of the class to compare the images' patches with")


def _shots_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shots", type=_positive_int, default=None,
                   help="few-shot: K normal reference images per class from the data set's train split (cached with "
                        "`zsad precompute --split train --patches`); adds mode=few-shot when --variants names no mode")
    p.add_argument("--shot-seed", "--seed", dest="shot_seed", type=int, default=None,
                   help="few-shot: which K images are drawn (default 0)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="few-shot against the normal images of DIR/<class>/ (or of DIR itself for one --classes) "
                        "instead of the data set's train split; all of them unless --shots")


def prefect_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prefect", action="store_true",
                   help="run as a Prefect flow (shown in the UI of the server PREFECT_API_URL names)")

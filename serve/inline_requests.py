"""The requests of the inline commands, ``zsad serve`` and ``zsad watch`` (declared as the other
commands' are: ``zsad.flows.request_fields``). ``InlineRequest`` holds what both need: where
results go (store, ``out`` for the audit log, ``scores.csv`` and uploads, webhook, MQTT) and how
files are scored by default (config, variant, threshold, data set name).

Example:
    >>> ServeRequest(store="s.zarr").host, WatchRequest(folder="in", class_name="pill").settle_s
    ('127.0.0.1', 1.0)
    >>> ServeRequest(host="0.0.0.0")
    Traceback (most recent call last):
    ...
    ValueError: --host 0.0.0.0 is not a loopback address: other machines could reach the service, so it needs a bearer token (--token or ZSAD_SERVE_TOKEN); refusing to start without one
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from zsad.flows.cli_args import name_arg, positive_int
from zsad.flows.command_requests import ScoringRequest
from zsad.flows.request_fields import class_option, is_loopback, option, reference_option, threshold_option
from zsad.thresholds import ThresholdSpec


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class InlineRequest(ScoringRequest):
    """What ``serve`` and ``watch`` share: how files are scored (``ScoringRequest``), the default
    threshold and where results go."""

    threshold: ThresholdSpec = threshold_option("auto", "--threshold", "default threshold: auto (stored F1-max, "
                                                "else stored FPR), f1, fpr, none (score without deciding) or a number")
    name: str = option("line", "--name", "data set name the images get in the store (the nightly flow's by default, "
                       "so its report shows them)", type=name_arg)
    reference: str | None = reference_option("few-shot: a folder of normal images of the class")
    out: str = option("zsad-inline", "--out", "folder of audit.jsonl, scores.csv and the uploads")
    webhook: str | None = option(None, "--webhook", "also POST each batch's JSON results to this URL", metavar="URL")
    mqtt: str | None = option(None, "--mqtt", "also publish each batch's JSON results (paho-mqtt)",
                              metavar="HOST[:PORT]/TOPIC")



@dataclass(frozen=True, kw_only=True)
class ServeRequest(InlineRequest):
    """``zsad serve``: a warm HTTP service (FastAPI/uvicorn): POST /v1/predict, a review page at /."""

    out: str = option("zsad-serve", "--out", "folder of audit.jsonl, scores.csv and the uploads")
    host: str = option("127.0.0.1", "--host", "address to bind (not a loopback one: --token is required)")
    port: int = option(8000, "--port", "port to bind (0: any free one)", type=int)
    token: str | None = field(default=None, repr=False, metadata={"cli": {  # repr=False: never in a log
        "flag": "--token", "help": "bearer token every request must carry (default: $ZSAD_SERVE_TOKEN)"}})
    classes: tuple[str, ...] = option((), "--classes", "classes /v1/ready checks for thresholds; the first also "
                                      "warms the models", nargs="*")
    max_upload_mb: float = option(32.0, "--max-upload-mb", "largest request body (MB)", type=_positive)
    max_batch: int = option(16, "--max-batch", "most images gathered into one model batch", type=positive_int)
    batch_wait_ms: float = option(20.0, "--batch-wait-ms", "how long the first request of a batch waits for others",
                                  type=float)
    queue_size: int = option(64, "--queue-size", "requests waiting beyond this get 503 with Retry-After",
                             type=positive_int)
    max_reading: int = option(16, "--max-reading", "most request bodies read at once (more get 503 before being "
                              "read; with --max-upload-mb, what bodies may hold in memory)", type=positive_int)
    max_connections: int = option(64, "--max-connections", "most open connections and requests (more get 503)",
                                  type=positive_int)
    header_timeout_s: float = option(10.0, "--header-timeout", "seconds a connection may take to send a request's "
                                     "headers before it is closed", type=_positive)
    body_timeout_s: float = option(60.0, "--body-timeout", "seconds a request may take to send its body (408 after)",
                                   type=_positive)
    keep_alive_s: float = option(5.0, "--keep-alive", "seconds an idle connection is kept open", type=_positive)
    allowed_hosts: tuple[str, ...] = option((), "--allowed-host", "Host names this server answers besides loopback "
                                            "and the bound address (DNS rebinding guard)", nargs="*")
    report_dir: str | None = option(None, "--report-dir", "a `zsad report` folder the review page links to "
                                    "(served at /report/)")
    warm: bool = option(True, "--no-warm", "do not score a synthetic image at start (the first request loads the "
                        "models)", action="store_false")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token is None and os.environ.get("ZSAD_SERVE_TOKEN"):
            object.__setattr__(self, "token", os.environ["ZSAD_SERVE_TOKEN"])
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"--host {self.host} is not a loopback address: other machines could reach the service, "
                             "so it needs a bearer token (--token or ZSAD_SERVE_TOKEN); refusing to start without one")
        if self.batch_wait_ms < 0:
            raise ValueError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")


@dataclass(frozen=True, kw_only=True)
class WatchRequest(InlineRequest):
    """``zsad watch``: score each image written into a folder once it is complete."""

    folder: str = option(dataclasses.MISSING, "folder", "the folder to watch (recursively)", required=True)
    class_name: str = class_option()
    out: str = option("zsad-watch", "--out", "folder of audit.jsonl and scores.csv")
    settle_s: float = option(1.0, "--settle", "a file is complete once its size and time are unchanged this long "
                             "(seconds)", type=_positive)
    poll: bool = option(False, "--poll", "poll the folder instead of OS events (network shares)", action="store_true")
    once: bool = option(False, "--once", "score what is in the folder now (not yet scored), then exit",
                        action="store_true")
    max_batch: int = option(16, "--max-batch", "most complete files scored in one batch", type=positive_int)
    timeout_s: float | None = option(None, "--timeout", "stop after this many seconds (default: run until "
                                     "interrupted)", type=_positive)



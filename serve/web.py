"""The service's plumbing: Prometheus metrics, the bearer token, error bodies, the request-body
limit and time limit, and the list of recent decisions the review page shows."""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

class Metrics:
    """The service's Prometheus metrics, in a registry of its own (``/metrics``)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("zsad_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram("zsad_request_seconds", "HTTP request latency by route", ["route"], registry=r,
                                 buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
        self.batch = Histogram("zsad_batch_images", "images per model batch", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64))
        self.batch_seconds = Histogram("zsad_batch_seconds", "seconds per model batch", registry=r,
                                       buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
        self.queue = Gauge("zsad_queue_depth", "requests waiting for a batch", registry=r)
        self.errors = Counter("zsad_errors", "errors by kind", ["kind"], registry=r)
        self.decisions = Counter("zsad_decisions", "files decided, by decision", ["decision"], registry=r)

    def observe_batch(self, images: int, depth: int, seconds: float) -> None:
        self.batch.observe(images)
        self.batch_seconds.observe(seconds)
        self.queue.set(depth)


def error_response(status: int, kind: str, message: str, request_id: str, headers: dict | None = None
                   ) -> JSONResponse:
    """The one error body: ``{"error": {"kind", "message", "request_id"}}`` (never a traceback)."""
    return JSONResponse({"error": {"kind": kind, "message": message, "request_id": request_id}}, status_code=status,
                        headers=headers)


def authorised(request: Request, token: str | None) -> bool:
    """No token configured, or the request's bearer token (or ``zsad_token`` cookie, the page's) matches it."""
    if not token:
        return True
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get("zsad_token", "")
    return hmac.compare_digest(given.encode(), token.encode())


async def read_limited(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refused (``BadRequest`` 413) as soon as it passes ``limit`` bytes: from
    ``Content-Length`` before reading anything, else while it streams in; 408 when it takes
    longer than ``timeout_s``. Starlette's form parser then reads the kept body."""
    from .fields import BadRequest
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the request body is {int(declared):,} bytes, over the limit of {limit:,} "
                         "(--max-upload-mb)", 413, "too_large")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the request body passed the limit of {limit:,} bytes (--max-upload-mb)", 413,
                                 "too_large")
            chunks.append(chunk)
    try:
        await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise BadRequest(f"the request body did not arrive within {timeout_s:g} s (--body-timeout)", 408,
                         "timeout") from None
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - Starlette's own cache of the body: form() parses it from here
    return body


@dataclass(frozen=True)
class Recent:
    """One decision the review page lists: its number (for its panel's URL) and verdict."""

    n: int
    verdict: Any


class RecentDecisions:
    """The latest ``size`` verdicts of this process, flagged ones first when listed."""

    def __init__(self, size: int = 200):
        self._items: collections.deque[Recent] = collections.deque(maxlen=size)
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, verdicts) -> None:
        with self._lock:
            self._items.extend(Recent(next(self._count), v) for v in verdicts)

    def get(self, n: int) -> Recent | None:
        with self._lock:
            return next((r for r in self._items if r.n == n), None)

    def listed(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first within each group: anomalous, then failed, then the rest."""
        with self._lock:
            items = list(self._items)[::-1]
        rank = {"anomalous": 0, None: 1}
        items.sort(key=lambda r: rank.get(r.verdict.decision, 2))
        return [{"n": r.n, **r.verdict.as_json(), "request_id": r.verdict.request_id,
                 "panel": f"/v1/decisions/{r.n}/panel.png" if r.verdict.unit is not None else None}
                for r in items[:limit]]

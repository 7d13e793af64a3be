"""The FastAPI application of ``zsad serve`` (``create_app``); ``zsad.serve.run`` runs it.

Routes: ``POST /v1/predict``, ``GET /v1/health``, ``GET /v1/ready``, ``GET /metrics``, the
review page ``GET /`` with ``GET /v1/decisions`` and each decision's panel, FastAPI's ``/docs``,
and ``/report/`` when a report folder is given. Every answer carries ``X-Request-ID`` (the
client's, when it is a name of at most 64 characters, else 422; one made here otherwise) and
the security headers (``serve_guard``); an error body is
``{"error": {"kind", "message", "request_id"}}``, FastAPI's and Starlette's own errors
included, and its traceback goes to the log. Before any route: the Host allow-list (400), the
token (401), cross-site posts (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from zsad.names import TYPED_NAME_MAX, is_name

from .batcher import Batcher, Overloaded
from .inspector import Inspector
from .verdicts import Job
from .inline_requests import ServeRequest
from .fields import BadRequest
from .guard import allowed_hosts, cross_site, host_allowed, security_headers
from .body import read_job
from .web import Metrics, RecentDecisions, authorised, error_response

log = logging.getLogger("zsad.serve")
OPEN = ("/v1/health",)  # answered without the token (a liveness probe)
FORM_SCHEMA = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files", "class"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "class": {"type": "string"}, "threshold": {"type": "string", "default": "auto"},
        "variant": {"type": "string"}, "reference": {"type": "string"},
        "heatmap": {"type": "string", "enum": ["png"]}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
KINDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "timeout", 413: "too_large",
         415: "unsupported_media_type", 422: "bad_request", 503: "overloaded"}


def _refusal(request: Request, r: ServeRequest, allowed: frozenset[str]) -> tuple[int, str, str] | None:
    """Why a request is refused before any route (status, kind, message), or None."""
    if not host_allowed(request.headers.get("host", ""), allowed):
        return 400, "bad_host", ("this server answers Host names of loopback, its bound address and --allowed-host; "
                                 f"got {request.headers.get('host', '')[:80]!r}")
    page_login = bool(r.token) and request.url.path == "/" and hmac.compare_digest(
        request.query_params.get("token", "").encode(), r.token.encode())  # the page: /?token=T sets a cookie
    request.state.page_login = page_login
    if request.url.path not in OPEN and not page_login and not authorised(request, r.token):
        return 401, "unauthorised", "a bearer token is required (Authorization: Bearer TOKEN)"
    why = cross_site(request.method, request.headers)
    return None if why is None else (403, "cross_site", why)


def _request_id(request: Request) -> tuple[str, str | None]:
    """The answer's request id, and what is wrong with the client's ``X-Request-ID`` (or None)."""
    given = request.headers.get("x-request-id", "")
    if given and not is_name(given, max_len=TYPED_NAME_MAX):
        return uuid.uuid4().hex[:16], (f"X-Request-ID {given[:80]!r} is not a valid id: 1-{TYPED_NAME_MAX} "
                                       "characters from letters, digits, '_', '.' and '-'")
    return given or uuid.uuid4().hex[:16], None


def create_app(r: ServeRequest, inspector: Inspector) -> FastAPI:
    """The service for request ``r`` around a (warm or not yet warm) ``inspector``."""
    metrics, recent = Metrics(), RecentDecisions()
    allowed = allowed_hosts(r.host, r.allowed_hosts, r.token)
    score = _scorer(inspector, metrics, recent)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = Batcher(score, max_batch=r.max_batch, wait_s=r.batch_wait_ms / 1000,
                                    queue_size=r.queue_size, max_reading=r.max_reading, observe=metrics.observe_batch)
        yield
        await run_in_threadpool(app.state.batcher.close)  # the queued requests are finished first

    app = FastAPI(title="zsad", version="1", lifespan=lifespan,
                  description="Zero-shot anomaly detection, warm: score images, decide, explain.")
    app.state.recent, app.state.metrics, app.state.inspector = recent, metrics, inspector

    @app.middleware("http")
    async def frame(request: Request, call_next):
        rid, bad_id = _request_id(request)
        request.state.rid, request.state.nonce, t0 = rid, secrets.token_urlsafe(16), time.perf_counter()
        route = request.url.path if request.url.path in ROUTES else "other"
        refused = (422, "bad_request", bad_id) if bad_id else _refusal(request, r, allowed)
        if refused is not None:
            status, kind, message = refused
            metrics.errors.labels(kind).inc()
            response = error_response(status, kind, message, rid,
                                      {"WWW-Authenticate": "Bearer"} if status == 401 else None)
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - the client gets the request id, the log the traceback
                log.exception("request %s failed", rid)
                metrics.errors.labels("internal").inc()
                response = error_response(500, "internal", f"internal error (request {rid}; see the server log)", rid)
        response.headers["X-Request-ID"] = rid
        response.headers.update(security_headers(request.url.path, request.state.nonce))
        if refused is None and request.state.page_login:
            response.set_cookie("zsad_token", r.token, httponly=True, samesite="strict")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - t0)
        return response

    _error_handlers(app)
    _routes(app, r, inspector, metrics, recent)
    ROUTES = {route.path for route in app.routes}
    return app


def _scorer(inspector: Inspector, metrics: Metrics, recent: RecentDecisions):
    """What the batcher's thread calls: the inspector's scoring, counted and listed."""
    def score(jobs):
        results = inspector.score(jobs)
        for verdicts in results:
            recent.add(verdicts)
            for v in verdicts:
                metrics.decisions.labels(v.decision or "error").inc()
                if v.error is not None:
                    metrics.errors.labels(f"http_{v.status}").inc()
        return results
    return score


def _error_handlers(app: FastAPI) -> None:
    """FastAPI's and Starlette's own errors (404, 405, a bad query value ...) in the one error body."""
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        kind = KINDS.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        return error_response(exc.status_code, kind, str(exc.detail), request.state.rid, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()[:5])
        return error_response(422, "bad_request", where or "invalid request", request.state.rid)


def _routes(app: FastAPI, r: ServeRequest, inspector: Inspector, metrics: Metrics, recent: RecentDecisions) -> None:
    @app.post("/v1/predict", openapi_extra=FORM_SCHEMA, summary="score images: a decision per file")
    async def predict(request: Request):
        return await _predict(request, r, inspector, metrics)

    @app.get("/v1/health", summary="alive")
    async def health():
        return {"status": "alive"}

    @app.get("/v1/ready", summary="what a default request uses: models, store, variant, thresholds")
    async def ready():
        checks = await run_in_threadpool(readiness, r, inspector)
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        metrics.queue.set(app.state.batcher.depth)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/decisions", summary="the latest decisions, flagged first")
    async def decisions(limit: int = 50):
        return {"decisions": recent.listed(max(1, min(limit, 200)))}

    @app.get("/v1/decisions/{n}/panel.png", summary="one decision's panel")
    async def panel(n: int, request: Request):
        item = recent.get(n)
        if item is None or item.verdict.unit is None:
            return error_response(404, "not_found", f"no scored decision {n} in this server's recent list",
                                  request.state.rid)
        png = await run_in_threadpool(inspector.panel, item.verdict)
        return Response(png, media_type="image/png")

    @app.get("/", response_class=HTMLResponse, summary="the review page")
    async def page(request: Request):
        from .page import render_page
        return HTMLResponse(render_page(r, inspector, nonce=request.state.nonce))

    if r.report_dir:
        from fastapi.staticfiles import StaticFiles

        @app.get("/report/", include_in_schema=False)
        async def report_index():
            return RedirectResponse("/report/report.html", status_code=307)
        app.mount("/report", StaticFiles(directory=r.report_dir, html=True, check_dir=False), name="report")


async def _predict(request: Request, r: ServeRequest, inspector: Inspector, metrics: Metrics) -> Response:
    """One ``/v1/predict``: a place in the queue first (503 before anything is read), then the
    job read (4xx for a client's mistake, nothing spooled), queued, and answered."""
    rid, batcher = request.state.rid, request.app.state.batcher
    try:
        batcher.reserve()
    except Overloaded as exc:
        metrics.errors.labels("overloaded").inc()
        return error_response(503, "overloaded", str(exc), rid, {"Retry-After": str(exc.retry_after)})
    try:
        job = await read_job(request, r, inspector, request_id=rid, job_id=uuid.uuid4().hex)
        entry = batcher.submit(job, size=max(1, sum(it.path is not None for it in job.items)), reserved=True)
    except BadRequest as exc:
        batcher.release()
        metrics.errors.labels(exc.kind).inc()
        return error_response(exc.status, exc.kind, str(exc), rid)
    except Overloaded as exc:
        metrics.errors.labels("overloaded").inc()
        return error_response(503, "overloaded", str(exc), rid, {"Retry-After": str(exc.retry_after)})
    except BaseException:
        batcher.release()
        raise
    metrics.queue.set(batcher.depth)
    wrapped = asyncio.wrap_future(entry.future)
    while not (await asyncio.wait({wrapped}, timeout=0.25))[0]:
        if await request.is_disconnected() and batcher.cancel(entry):
            metrics.errors.labels("client_gone").inc()
            return Response(status_code=499)
    verdicts = wrapped.result()
    statuses = [v.status for v in verdicts]
    status = 200 if 200 in statuses else (statuses[0] if statuses else 422)
    return JSONResponse({"request_id": rid, "results": [v.as_json() for v in verdicts]}, status_code=status)


def readiness(r: ServeRequest, inspector: Inspector) -> dict[str, dict]:
    """``/v1/ready``'s checks of what a default request uses: models loaded, store reachable, the
    server's variant and reference valid, and a threshold under them for each of ``--classes``."""
    checks = {"models": {"ok": inspector.models_ready, "detail": "loaded" if inspector.models_ready else
                         "not loaded yet (they load at start, or with the first request under --no-warm)"}}
    try:
        from zsad.stores import open_store
        open_store(r.store).children("")
        checks["store"] = {"ok": True, "detail": "reachable"}
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["store"] = {"ok": False, "detail": inspector.public(f"{type(exc).__name__}: {exc}")}
        return checks
    try:
        variant = inspector.resolve(r.variant, r.reference)
        checks["variant"] = {"ok": True, "detail": r.variant + (" with --reference" if r.reference else "")}
    except ValueError as exc:
        checks["variant"] = {"ok": False, "detail": inspector.public(str(exc))}
        return checks
    for cls in r.classes:
        job = Job(request_id="ready", job_id="ready", class_name=cls, items=(), variant=variant,
                  threshold=r.threshold)
        try:
            d, _ = inspector.decision(job)
            checks[f"threshold:{cls}"] = {"ok": True, "detail": inspector.public(d.source)}
        except ValueError as exc:
            checks[f"threshold:{cls}"] = {"ok": False, "detail": inspector.public(str(exc))}
    return checks

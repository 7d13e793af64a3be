"""The FastAPI application of ``zsad serve`` (``create_app``); ``zsad.flows.serve`` runs it.

Routes: ``POST /v1/predict``, ``GET /v1/health``, ``GET /v1/ready``, ``GET /metrics``, the
review page ``GET /`` with ``GET /v1/decisions`` and each decision's panel, FastAPI's ``/docs``,
and ``/report/`` when a report folder is given. Every response carries ``X-Request-ID``; an
error body is ``{"error": {"kind", "message", "request_id"}}`` and its traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .batcher import Batcher, Overloaded
from .inline import Inspector, Job
from .inline_requests import ServeRequest
from .serve_web import SAFE_ID, BodyTooLarge, Metrics, RecentDecisions, authorised, error_response, read_limited

log = logging.getLogger("zsad.serve")
OPEN = ("/v1/health",)  # answered without the token (a liveness probe)
FORM_SCHEMA = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files", "class"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "class": {"type": "string"}, "threshold": {"type": "string", "default": "auto"},
        "variant": {"type": "string"}, "reference": {"type": "string"},
        "heatmap": {"type": "string", "enum": ["png"]}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


class BadRequest(ValueError):
    pass


def create_app(r: ServeRequest, inspector: Inspector) -> FastAPI:
    """The service for request ``r`` around a (warm or not yet warm) ``inspector``."""
    metrics, recent = Metrics(), RecentDecisions()
    batcher_box: dict[str, Batcher] = {}

    def score(jobs):
        results = inspector.score(jobs)
        for verdicts in results:
            recent.add(verdicts)
            for v in verdicts:
                metrics.decisions.labels(v.decision or "error").inc()
                if v.error is not None:
                    metrics.errors.labels(f"http_{v.status}").inc()
        return results

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher_box["b"] = Batcher(score, max_batch=r.max_batch, wait_s=r.batch_wait_ms / 1000,
                                   queue_size=r.queue_size, observe=metrics.observe_batch)
        yield
        await run_in_threadpool(batcher_box["b"].close)  # the queued requests are finished first

    app = FastAPI(title="zsad", version="1", lifespan=lifespan,
                  description="Zero-shot anomaly detection, warm: score images, decide, explain.")
    app.state.recent, app.state.metrics, app.state.inspector = recent, metrics, inspector

    @app.middleware("http")
    async def frame(request: Request, call_next):
        rid = request.headers.get("x-request-id", "")
        rid = rid if SAFE_ID.match(rid) else uuid.uuid4().hex[:16]
        request.state.rid, t0 = rid, time.perf_counter()
        route = request.url.path if request.url.path in ROUTES else "other"
        page_login = bool(r.token) and request.url.path == "/" and hmac.compare_digest(
            request.query_params.get("token", "").encode(), r.token.encode())  # the page: /?token=T sets a cookie
        if request.url.path not in OPEN and not page_login and not authorised(request, r.token):
            response = error_response(401, "unauthorised", "a bearer token is required (Authorization: Bearer "
                                      "TOKEN)", rid, {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - the client gets the request id, the log the traceback
                log.exception("request %s failed", rid)
                metrics.errors.labels("internal").inc()
                response = error_response(500, "internal", f"internal error (request {rid}; see the server log)", rid)
        response.headers["X-Request-ID"] = rid
        if page_login:
            response.set_cookie("zsad_token", r.token, httponly=True, samesite="strict")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - t0)
        return response

    @app.post("/v1/predict", openapi_extra=FORM_SCHEMA, summary="score images: a decision per file")
    async def predict(request: Request):
        rid = request.state.rid
        try:
            job = await _read_job(request, r, inspector, rid)
        except BodyTooLarge as exc:
            metrics.errors.labels("too_large").inc()
            return error_response(413, "too_large", str(exc), rid)
        except BadRequest as exc:
            metrics.errors.labels("bad_request").inc()
            return error_response(422, "bad_request", str(exc), rid)
        batcher = batcher_box["b"]
        try:
            entry = batcher.submit(job, size=max(1, sum(it.path is not None for it in job.items)))
        except Overloaded as exc:
            metrics.errors.labels("overloaded").inc()
            return error_response(503, "overloaded", str(exc), rid, {"Retry-After": str(exc.retry_after)})
        metrics.queue.set(batcher.depth)
        wrapped = asyncio.wrap_future(entry.future)
        while True:
            done, _ = await asyncio.wait({wrapped}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected() and batcher.cancel(entry):
                metrics.errors.labels("client_gone").inc()
                return Response(status_code=499)
        verdicts = wrapped.result()
        statuses = [v.status for v in verdicts]
        status = 200 if 200 in statuses else (statuses[0] if statuses else 422)
        return JSONResponse({"request_id": rid, "results": [v.as_json() for v in verdicts]}, status_code=status)

    @app.get("/v1/health", summary="alive")
    async def health():
        return {"status": "alive"}

    @app.get("/v1/ready", summary="models loaded, store reachable, thresholds present")
    async def ready():
        checks = await run_in_threadpool(readiness, r, inspector)
        return JSONResponse({"ready": all(c["ok"] for c in checks.values()), "checks": checks},
                            status_code=200 if all(c["ok"] for c in checks.values()) else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        metrics.queue.set(batcher_box["b"].depth)
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
        from .serve_page import render_page
        return HTMLResponse(render_page(r, inspector))

    if r.report_dir:
        from fastapi.staticfiles import StaticFiles
        app.mount("/report", StaticFiles(directory=r.report_dir, html=True, check_dir=False), name="report")
    ROUTES = {route.path for route in app.routes}
    return app


async def _read_job(request: Request, r: ServeRequest, inspector: Inspector, rid: str) -> Job:
    """The job of one ``/v1/predict`` request: its images checked and spooled, its fields validated."""
    body = await read_limited(request, int(r.max_upload_mb * 1e6))
    fields = dict(request.query_params)
    uploads: list[tuple[str, bytes]] = []
    if request.headers.get("content-type", "").startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_files=r.max_batch, max_fields=20)
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key != "files":
                    raise BadRequest(f"upload field {key!r}: images go in the field 'files'")
                uploads.append((Path(value.filename or "upload").name, await value.read()))
            else:
                fields[key] = value
    elif body:
        uploads.append((Path(fields.get("file", "upload")).name, body))
    if not uploads:
        raise BadRequest("no image: send multipart field 'files' (one or more) or the image as the request body")
    class_name = fields.get("class", "")
    if not SAFE_ID.match(class_name):
        raise BadRequest(f"field 'class' must name the object class (letters, digits, _ . -), got {class_name!r}")
    threshold = fields.get("threshold", r.threshold)
    _check_threshold(threshold)
    reference = fields.get("reference")
    if reference is not None:
        if not r.reference or not SAFE_ID.match(reference) or reference.startswith("."):
            raise BadRequest("field 'reference' names a sub-folder of the server's --reference folder (letters, "
                             f"digits, _ . -); got {reference!r}" + ("" if r.reference else
                                                                    ", and this server has no --reference"))
        reference = str(Path(r.reference) / reference)
    variant = fields.get("variant", r.variant)
    try:
        from .predict import one_variant
        one_variant(variant, reference, r.name)
    except ValueError as exc:
        raise BadRequest(f"field 'variant': {exc}") from None
    items = tuple([await run_in_threadpool(inspector.spool, data, name) for name, data in uploads])
    return Job(request_id=rid, class_name=class_name, items=items, variant=variant, threshold=threshold,
               reference=reference or r.reference, heatmap=fields.get("heatmap") == "png")


def _check_threshold(text: str) -> None:
    if text in ("auto", "f1", "fpr", "none"):
        return
    try:
        float(text)
    except ValueError:
        raise BadRequest(f"field 'threshold' must be auto, f1, fpr, none or a number, got {text!r}") from None


def readiness(r: ServeRequest, inspector: Inspector) -> dict[str, dict]:
    """``/v1/ready``'s checks: models loaded, store reachable, a threshold for each of ``--classes``."""
    checks = {"models": {"ok": inspector.models_ready, "detail": "loaded" if inspector.models_ready else
                         "not loaded yet (they load at start, or with the first request under --no-warm)"}}
    try:
        from zsad.stores import open_store
        open_store(r.store).children("")
        checks["store"] = {"ok": True, "detail": r.store}
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["store"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        return checks
    for cls in r.classes:
        try:
            d, _ = inspector.decision(Job(request_id="ready", class_name=cls, items=(), threshold=r.threshold))
            checks[f"threshold:{cls}"] = {"ok": True, "detail": d.source}
        except ValueError as exc:
            checks[f"threshold:{cls}"] = {"ok": False, "detail": str(exc)}
    return checks


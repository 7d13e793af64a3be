"""Reading one ``POST /v1/predict`` request into a ``Job``, bounded at every step: the body's
kind from its ``Content-Type`` (multipart, ``image/*`` or ``application/octet-stream``; 415
with the fix otherwise) before a byte is read, the body's size and time, the form's field and
file counts, the fields (``PredictFields``), one variant, then the uploads checked and spooled.
The caller holds a place in the queue (``Batcher.reserve``) while this runs."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .inspector import Inspector
from .verdicts import Job
from .inline_requests import ServeRequest
from .fields import FIELD_MAX, BadRequest, PredictFields, upload_name
from .web import read_limited

RAW_TYPES = ("image/", "application/octet-stream")
HOW_TO_SEND = ("send the image as the body with its type (curl -H 'Content-Type: image/png' --data-binary @x.png "
               "'URL/v1/predict?class=pill') or as multipart (curl -F files=@x.png -F class=pill URL/v1/predict)")


def body_kind(content_type: str | None) -> str:
    """``"form"`` (multipart) or ``"raw"`` (an image as the body), from ``Content-Type``; a
    ``BadRequest`` 415 for anything else.

    Example:
        >>> body_kind("multipart/form-data; boundary=x"), body_kind("image/png"), body_kind("application/octet-stream")
        ('form', 'raw', 'raw')
    """
    value = (content_type or "").split(";", 1)[0].strip().lower()
    if value == "multipart/form-data":
        return "form"
    if value.startswith(RAW_TYPES[0]) or value == RAW_TYPES[1]:
        return "raw"
    raise BadRequest(f"Content-Type {value or '(none)'!r} is not accepted: {HOW_TO_SEND}", 415,
                     "unsupported_media_type")


async def _form(request: Request, r: ServeRequest) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """The multipart form's text fields and uploads (at most ``max_batch`` files)."""
    try:
        form = await request.form(max_files=r.max_batch, max_fields=len(FIELD_MAX), max_part_size=64 * 1024)
    except HTTPException as exc:
        raise BadRequest(f"the multipart form: {exc.detail} (at most {r.max_batch} files, --max-batch, and "
                         f"{len(FIELD_MAX)} text fields)") from None
    fields, uploads = {}, []
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            if key != "files":
                raise BadRequest(f"upload field {key[:40]!r}: images go in the field 'files'")
            uploads.append((upload_name(value.filename), await value.read()))
        elif key in fields:
            raise BadRequest(f"field {key[:40]!r} is given twice")
        else:
            fields[key] = value
    return fields, uploads


async def read_job(request: Request, r: ServeRequest, inspector: Inspector, *, request_id: str,
                   job_id: str) -> Job:
    """The job of one ``/v1/predict`` request (see the module); ``BadRequest`` for a client's mistake."""
    kind = body_kind(request.headers.get("content-type"))
    body = await read_limited(request, int(r.max_upload_mb * 1e6), r.body_timeout_s)
    fields = dict(request.query_params)
    uploads: list[tuple[str, bytes]] = []
    if kind == "form":
        form_fields, uploads = await _form(request, r)
        both = sorted(set(fields) & set(form_fields))
        if both:
            raise BadRequest(f"field(s) {', '.join(map(repr, both))} given in the URL and in the form")
        fields.update(form_fields)
    parsed = PredictFields.parse(fields, default_variant=r.variant, default_threshold=r.threshold,
                                 has_reference=bool(r.reference))
    if kind == "raw" and body:
        uploads.append((parsed.file_name, body))
    if not uploads:
        raise BadRequest("no image: send multipart field 'files' (one or more) or the image as the request body")
    reference = str(Path(r.reference) / parsed.reference) if parsed.reference and r.reference else r.reference
    if parsed.reference and not Path(reference).is_dir():
        raise BadRequest(f"field 'reference': the server's --reference folder has no sub-folder {parsed.reference!r}")
    try:
        variant = inspector.resolve(parsed.variant, reference)
    except ValueError as exc:
        raise BadRequest(f"field 'variant': {inspector.public(str(exc))}") from None
    items = tuple([await run_in_threadpool(inspector.spool, data, name) for name, data in uploads])
    return Job(request_id=request_id, job_id=job_id, class_name=parsed.class_name, items=items,
               variant=variant, threshold=parsed.threshold, heatmap=parsed.heatmap)

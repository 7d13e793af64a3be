"""What the line service passes around: a job's files (``Item``), a job (``Job``: one HTTP
request or watched batch, parsed at the edge), a file's verdict (``Verdict``) and a whole job
refused (``JobError``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsad.stores import Unit
from zsad.flows.score_files import ResolvedVariant
from zsad.thresholds import AUTO, ThresholdSpec


@dataclass(frozen=True, kw_only=True)
class Item:
    """One file of a job: ``name`` as the client or folder gave it, ``path`` the file scored
    (None when it was refused before scoring: then ``error`` and ``status`` say why)."""

    name: str
    path: Path | None
    sha256: str
    error: str | None = None
    status: int = 200


@dataclass(frozen=True, kw_only=True)
class Job:
    """One request's images and how to score them (``variant``: resolved where the request came in;
    ``threshold``: as ``zsad predict --threshold``).
    ``job_id`` is made by the server (never the client's ``request_id``, which is only echoed):
    jobs of a mutual variant are kept apart by it."""

    request_id: str
    job_id: str
    class_name: str
    items: tuple[Item, ...]
    variant: ResolvedVariant
    threshold: ThresholdSpec = AUTO
    heatmap: bool = False
    source: str = "serve"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What one file got. ``score`` is None when it failed (``error``, ``status``: its HTTP status)."""

    file: str
    sha256: str
    class_name: str
    status: int
    score: float | None = None
    decision: str | None = None
    threshold: float | None = None
    pixel_threshold: float | None = None
    threshold_source: str | None = None
    variant: str | None = None
    variant_hash: str | None = None
    error: str | None = None
    request_id: str = ""
    source: str = "serve"
    time: float = 0.0
    heatmap_png: bytes | None = None
    unit: Unit | None = None
    path: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON of one result (the heatmap as base64 PNG when asked for)."""
        import base64
        out = {"file": self.file, "sha256": self.sha256, "class": self.class_name, "status": self.status,
               "score": self.score, "decision": self.decision, "threshold": self.threshold,
               "pixel_threshold": self.pixel_threshold, "threshold_source": self.threshold_source,
               "variant": self.variant, "variant_hash": self.variant_hash}
        if self.error is not None:
            out["error"] = self.error
        if self.heatmap_png is not None:
            out["heatmap_png"] = base64.b64encode(self.heatmap_png).decode()
        return out


class JobError(ValueError):
    """A whole job refused (``status``: 409 without a stored threshold, 422 for a bad request)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

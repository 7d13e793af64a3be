"""The inline path ``zsad serve`` and ``zsad watch`` share: files in, one verdict per file out.

An ``Inspector`` holds what a warm process keeps: the store, the config, the loaded models (in
``zsad.tasks.worker``'s per-process cache, loaded once by ``warm``) and the sinks. ``score``
takes jobs (one per HTTP request or watched file), runs each group of jobs that may share a
pipeline run (same class and resolved variant) through ``zsad.flows.score_files.score_files``,
exactly the code ``zsad predict`` runs, and decides with the thresholds ``predict`` would use
(read from the store at each batch, so a new ``zsad calibrate`` is seen without a restart).

A mutual variant (``mutual``, or ``musc`` without a cached batch) compares the images of one job
with each other: its jobs are never merged with other jobs, and a job of one image is refused
(``musc`` with ``against`` scores each image against the class's cached batch instead).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time

from pathlib import Path
from typing import Any

from zsad.datasets import ImageLimits
from zsad.datasets.decode import ImageError, sniff_image
from zsad.stores import open_store

from zsad.flows.command_requests import FilesRequest
from .inline_requests import InlineRequest
from zsad.flows.score_files import ResolvedVariant, resolve_variant, score_files, scored_row, unit_panel
from .sinks import Sinks
from .verdicts import Item, Job, JobError, Verdict
from zsad.flows.thresholds import Decision, MissingThreshold, resolve_thresholds

log = logging.getLogger("zsad.inline")
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~<>-])/(?:[^\s'\"(),;:/<>]+/)+[^\s'\"(),;:<>]*")


class Inspector:
    """The warm scorer of ``serve`` and ``watch`` (see the module docstring)."""

    def __init__(self, request: InlineRequest):
        self.r = request
        self.out = Path(request.out).resolve()
        self.uploads = self.out / "uploads"
        self.limits = ImageLimits.from_env()
        self.sinks = Sinks.of(request)
        self.models_ready = False
        self.swept = open_store(request.store).sweep_temps()  # what a writer killed mid-unit left

    def warm(self, class_name: str = "object") -> float:
        """Load every model of the config by scoring one synthetic image into a throw-away store
        (the real store is not touched); returns the seconds it took."""
        from PIL import Image

        from zsad.datasets.synthetic import make_image
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="zsad-warm-") as tmp:
            img, _ = make_image("pill", "scratch", 0, 256)
            Image.fromarray(img).save(Path(tmp) / "warm.png")
            variant = resolve_variant(self.r.variant, None, self.r.name, self.r.config)
            files = [str(Path(tmp) / "warm.png")]
            if self._alone(variant):
                Image.fromarray(make_image("pill", None, 1, 256)[0]).save(Path(tmp) / "warm2.png")
                files.append(str(Path(tmp) / "warm2.png"))
            scored = score_files(self._files_request(class_name, store=f"{tmp}/warm.zarr", against=None,
                                                      reference=None), tuple(files), variant.config)
        if scored.errors:
            raise RuntimeError(f"warming the models failed: {scored.errors[0].text()}")
        self.models_ready = True
        return time.perf_counter() - t0

    def _files_request(self, class_name: str, **over: Any) -> FilesRequest:
        return FilesRequest(**{**self.r.scoring(), "class_name": class_name, "progress": False, **over})

    def spool(self, data: bytes, name: str) -> Item:
        """An upload checked (format from its bytes, size from its header: nothing decoded) and
        written under ``out/uploads/`` by its sha256 (atomically: a killed server leaves no half
        file), or refused with the reason (413 too many pixels, 422 not an image)."""
        sha = hashlib.sha256(data).hexdigest()
        try:
            suffix = sniff_image(data, name, self.limits)
        except ImageError as exc:
            status = 413 if "megapixels" in str(exc) else 422
            return Item(name=name, path=None, sha256=sha, error=str(exc), status=status)
        path = self.uploads / f"{sha[:32]}{suffix}"
        if not path.exists():  # a temp file of its own: identical concurrent uploads all land, as one file
            self.uploads.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.uploads, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return Item(name=name, path=path, sha256=sha)

    def public(self, message: str) -> str:
        """``message`` as a client may see it: the server's store, output and reference folders
        named (``<store>`` ...), any other absolute path cut to ``.../`` and its last part.

        Example (a store at /srv/s.zarr, output /srv/out):
            >>> i = Inspector(InlineRequest(store="/srv/s.zarr", out="/srv/out"))
            >>> i.public("no threshold in /srv/s.zarr (FPR on '/data/cam/good', 2 images); see http://x/y")
            "no threshold in <store> (FPR on '.../good', 2 images); see http://x/y"
        """
        r = self.r
        named = [(r.store, "<store>"), (str(self.out), "<out>"), (r.out, "<out>")]
        named += [(r.reference, "<reference>")] if r.reference else []
        for path, name in sorted(((p, n) for p, n in named if p), key=lambda pn: -len(pn[0])):
            message = message.replace(str(Path(path).resolve()), name).replace(path, name)
        return ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], message)

    def resolve(self, text: str, reference: str | None) -> ResolvedVariant:
        """The variant ``text`` (with ``reference``) names for this server (``resolve_variant``)."""
        return resolve_variant(text, reference, self.r.name, self.r.config)

    def decision(self, job: Job) -> tuple[Decision, str]:
        """The thresholds of ``job`` (as ``predict`` resolves them) and its variant's hash."""
        vh = job.variant.variant_hash
        return resolve_thresholds(job.threshold, None, open_store(self.r.store), vh, job.class_name, self.r.store), vh

    def panel(self, v: Verdict) -> bytes:
        """The prediction panel of a scored verdict, drawn from the store at its own thresholds."""
        from zsad.datasets import Sample
        sample = Sample.unlabelled(v.path, v.class_name, v.unit.image_id)
        return unit_panel(open_store(self.r.store), sample, v.unit, v.variant_hash,
                          Decision(v.threshold, v.pixel_threshold, v.threshold_source or ""))

    def score(self, jobs: list[Job]) -> list[list[Verdict]]:
        """Score ``jobs`` (grouped into as few pipeline runs as their variants allow) and hand
        every verdict to the sinks; returns one list of verdicts per job, in its items' order."""
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(self._group(job), []).append(i)
        out: list[list[Verdict]] = [[] for _ in jobs]
        for members in groups.values():
            group = [jobs[i] for i in members]
            try:
                results = self._score_group(group)
            except (JobError, MissingThreshold) as exc:
                results = [_refused(j, getattr(exc, "status", 409), self.public(str(exc))) for j in group]
            except ValueError as exc:  # the request's own fault (shots, a reference that is also scored ...)
                results = [_refused(j, 422, self.public(str(exc))) for j in group]
            except Exception:  # noqa: BLE001 - the traceback goes to the log, the client gets the request id
                log.exception("scoring failed: requests %s", ", ".join(j.request_id for j in group))
                results = [_refused(j, 500, f"internal error while scoring (request {j.request_id}; the "
                                    "traceback is in the server's log)") for j in group]
            for i, verdicts in zip(members, results):
                out[i] = verdicts
        self.sinks.emit([v for vs in out for v in vs])
        return out

    def _group(self, job: Job) -> tuple:
        alone = self._alone(job.variant)
        return (job.class_name, job.variant, job.threshold, job.job_id if alone else "")

    def _alone(self, variant: ResolvedVariant) -> bool:
        """A variant that compares a job's images with each other (never merged with other jobs)."""
        d = variant.config.detector
        return d.together and not (d.against_batch and self.r.against is not None)

    def _score_group(self, jobs: list[Job]) -> list[list[Verdict]]:
        first = jobs[0]
        variant = first.variant
        decision, vh = self.decision(first)
        paths = tuple(dict.fromkeys(str(it.path) for j in jobs for it in j.items if it.path is not None))
        if self._alone(variant) and len(paths) == 1:
            raise JobError(422, f"variant {variant.label!r} compares the images of one request with each other: "
                           "send two or more, or (MuSc) start the server with --against DATASET to score each image "
                           "against the class's cached batch")
        rows, failed = self._run(first, paths, decision) if paths else ({}, {})
        base = dict(class_name=first.class_name, threshold=decision.image, pixel_threshold=decision.pixel,
                    threshold_source=self.public(decision.source), variant=variant.label, variant_hash=vh,
                    time=time.time())
        out = []
        for job in jobs:
            verdicts = []
            for it in job.items:
                common = dict(base, file=it.name, sha256=it.sha256, request_id=job.request_id, source=job.source)
                key = str(it.path)
                if it.path is None or key in failed:
                    verdicts.append(Verdict(**common, status=it.status if it.path is None else 422,
                                            error=it.error if it.path is None else failed[key]))
                    continue
                sample, unit, row = rows[key]
                png = unit_panel(open_store(self.r.store), sample, unit, vh, decision) if job.heatmap else None
                verdicts.append(Verdict(**common, status=200, score=row["sample_score"], decision=row["decision"],
                                        heatmap_png=png, unit=unit, path=key))
            out.append(verdicts)
        return out

    def _run(self, job: Job, paths: tuple[str, ...], decision: Decision
             ) -> tuple[dict[str, tuple], dict[str, str]]:
        """``score_files`` on ``paths``: the rows of the scored ones and the reasons of the others, by path."""
        v = job.variant
        scored = score_files(self._files_request(job.class_name, variant=v.text, reference=v.reference), paths,
                             v.config)
        st = open_store(self.r.store)
        rows = {str(Path(s.path)): (s, u, scored_row(st, s, u, scored.variant_hash, decision, None, ""))
                for s, u in scored.items if u is not None}
        failed = {str(Path(f.path).resolve()): _reason(f.error, f.path) for f in scored.errors + scored.skipped}
        resolved = {str(Path(p).resolve()): p for p in paths}
        return ({resolved.get(k, k): v for k, v in rows.items()},
                {resolved.get(k, k): v for k, v in failed.items()})


def _reason(error: str, path: str) -> str:
    """A failure's reason without the server's own file path (the client named the file otherwise)."""
    return error.replace(f"{path}: ", "").replace(str(Path(path).resolve()) + ": ", "")


def _refused(job: Job, status: int, error: str) -> list[Verdict]:
    """Every item of ``job`` refused with ``error`` (its own reason first where it had one)."""
    return [Verdict(file=it.name, sha256=it.sha256, class_name=job.class_name, status=it.status if it.error else status,
                    error=it.error or error, request_id=job.request_id, source=job.source, time=time.time())
            for it in job.items]

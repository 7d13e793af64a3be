"""``zsad watch DIR --class C``: a watched-folder source on the service's own code path.

Each image file written under ``DIR`` is scored once it is complete: its size and modification
time unchanged for ``--settle`` seconds (a camera or a copy still writing it is waited for).
Files are found by watchdog's OS events (``--poll``: its polling observer, for network
shares) and, at start, by listing the folder: files the store already holds with their
current size and time (the nightly flow's test) are not scored again. Files are keyed in the
store exactly as the nightly flow keys them (data set ``--name``, ids from their absolute
paths), so a nightly run over the same folder reuses every result.

Verdicts go to the sinks of ``zsad.serve.sinks`` (audit log, ``scores.csv``, webhook, MQTT);
a file that cannot be read is recorded with its reason and the watch goes on. A link that
leads out of the folder is never opened: it is recorded as refused (status 403). File names are
printed with their control characters escaped, so a name cannot forge a line of the log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from zsad.datasets import image_files, is_image_file
from zsad.datasets.base import file_sha256

from .inspector import Inspector
from .verdicts import Item, Job, Verdict
from .inline_requests import WatchRequest

log = logging.getLogger("zsad.watch")


class Settling:
    """Files seen changing, and when each was last seen changed; ``ready`` returns those unchanged
    for ``settle_s`` (thread-safe: the observer's thread calls ``touch``)."""

    def __init__(self, settle_s: float):
        self.settle_s = settle_s
        self._seen: dict[Path, tuple[tuple[int, int] | None, float]] = {}
        self._lock = threading.Lock()

    def touch(self, path: Path) -> None:
        if is_image_file(path):
            with self._lock:
                self._seen[path] = (None, time.monotonic())

    def ready(self) -> list[Path]:
        now, out = time.monotonic(), []
        with self._lock:
            for path, (sig, since) in list(self._seen.items()):
                try:
                    st = path.stat()
                except OSError:  # removed (or renamed) before it settled
                    del self._seen[path]
                    continue
                now_sig = (st.st_size, st.st_mtime_ns)
                if now_sig != sig:
                    self._seen[path] = (now_sig, now)
                elif now - since >= self.settle_s:
                    out.append(path)
                    del self._seen[path]
        return sorted(out)

    def __len__(self) -> int:
        return len(self._seen)


def _observer(r: WatchRequest, settling: Settling):
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            if not event.is_directory and event.event_type in ("created", "modified", "moved", "closed"):
                settling.touch(Path(getattr(event, "dest_path", "") or event.src_path).absolute())

    obs = (PollingObserver(timeout=0.5) if r.poll else Observer())
    obs.schedule(Handler(), r.folder, recursive=True)
    return obs


def run_watch(request: WatchRequest) -> dict[str, Any]:
    """Watch ``request.folder`` until interrupted (or ``--timeout``; ``--once``: what is there now)."""
    from zsad.flows.score_files import new_files
    r = request
    if not Path(r.folder).is_dir():
        raise ValueError(f"{r.folder}: the folder to watch does not exist")
    inspector = Inspector(r)
    variant = inspector.resolve(r.variant, r.reference)  # resolved once; a bad variant fails now, not per file
    if r.threshold.decides:
        inspector.decision(Job(request_id="start", job_id="start", class_name=r.class_name, items=(),
                               variant=variant, threshold=r.threshold))  # fail now, not per file
    settling, counts = Settling(r.settle_s), {"n_scored": 0, "n_failed": 0, "n_anomalous": 0}
    observer = None if r.once else _observer(r, settling)
    if observer is not None:
        observer.start()
    outside = _outside(r.folder, image_files(r.folder))
    fresh, total = new_files(r.folder, r.class_name, r.store, r.config, r.name)
    targets = {q.resolve() for q in outside}
    fresh = [p for p in fresh if p not in targets]
    _refuse(inspector, r, outside, counts)
    print(f"zsad watch: {r.folder}: {total} images there, {len(fresh)} not yet scored; audit log "
          f"{inspector.sinks.audit}", flush=True)
    done: dict[Path, tuple[int, int]] = {}
    started = time.monotonic()
    try:
        _score_batches(inspector, r, fresh, done, counts)
        while observer is not None and (r.timeout_s is None or time.monotonic() - started < r.timeout_s):
            time.sleep(0.2)
            _score_batches(inspector, r, settling.ready(), done, counts)
    except KeyboardInterrupt:
        pass
    finally:
        if observer is not None:
            observer.stop()
            observer.join(5)
    return {**counts, "audit": str(inspector.sinks.audit), "scores_csv": str(inspector.sinks.scores_csv)}


def _score_batches(inspector: Inspector, r: WatchRequest, paths: list[Path], done: dict, counts: dict) -> None:
    """Score the complete files not scored in their current version, ``max_batch`` at a time."""
    outside = _outside(r.folder, paths)
    _refuse(inspector, r, outside, counts)
    todo = []
    for p in (p.resolve() for p in paths if p not in outside):
        try:
            st = p.stat()
        except OSError:
            continue
        if done.get(p) != (st.st_size, st.st_mtime_ns):
            done[p] = (st.st_size, st.st_mtime_ns)
            todo.append(p)
    for i in range(0, len(todo), r.max_batch):
        part = todo[i:i + r.max_batch]
        job = Job(request_id=uuid.uuid4().hex[:16], job_id=uuid.uuid4().hex, class_name=r.class_name,
                  variant=inspector.resolve(r.variant, r.reference), threshold=r.threshold, source="watch",
                  items=tuple(Item(name=str(p), path=p, sha256=_sha(p)) for p in part))
        for v in inspector.score([job])[0]:
            _count(v, counts)


def _outside(folder: str, paths: list[Path]) -> list[Path]:
    """The ``paths`` (under ``folder``) that are links whose target lies outside ``folder``."""
    root = Path(folder).resolve()
    return [p for p in paths if not Path(p).resolve().is_relative_to(root)]


def _refuse(inspector: Inspector, r: WatchRequest, links: list[Path], counts: dict) -> None:
    """Record ``links`` (leading out of the folder) as refused, without opening them."""
    why = "a link to a file outside the watched folder: refused, not opened"
    verdicts = [Verdict(file=str(p), sha256="", class_name=r.class_name, status=403, error=why,
                        request_id=uuid.uuid4().hex[:16], source="watch", time=time.time()) for p in links]
    inspector.sinks.emit(verdicts)
    for v in verdicts:
        _count(v, counts)


def printable(text: str) -> str:
    """``text`` with control characters escaped (one log line per file, whatever its name).

    Example:
        >>> print(printable("a" + chr(10) + "b.png"))
        a\\nb.png
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _sha(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return ""


def _count(v: Verdict, counts: dict) -> None:
    if v.error is not None:
        counts["n_failed"] += 1
        print(f"zsad watch: {printable(v.file)}: {printable(v.error)}", flush=True)
    else:
        counts["n_scored"] += 1
        counts["n_anomalous"] += v.decision == "anomalous"
        print(f"zsad watch: {printable(v.file)}: score {v.score:.4f} {v.decision}", flush=True)

"""Gathering concurrent requests into one model batch: a bounded queue and one scoring thread.

The thread takes the oldest waiting job, then waits at most ``wait_s`` for more, up to
``max_batch`` images, and scores them in one call (``Inspector.score``: one pipeline run per
class and variant). The models live in that one thread's process, so requests never load them
again and never run two batches at once on a CPU that has two cores.

* ``reserve`` takes a place in the queue before a request's body is read (``Overloaded`` beyond
  ``queue_size`` waiting or reserved jobs, or beyond ``max_reading`` bodies being read at once:
  the service answers 503 with ``Retry-After``, an estimate from the recent batch times, and
  has read and written nothing); ``submit`` fills the place, ``release`` gives it back.
* ``cancel`` takes a job that has not started out of the queue (a client that went away frees
  its slot); a started one finishes and its results go to the sinks all the same.
* ``close`` finishes every job already queued, then stops the thread (graceful shutdown).

Written here rather than taken from LitServe: LitServe runs the model in worker processes of its
own behind its own server; here the batch must stay in the process that holds the store's unit
index and the loaded models, and jobs of a mutual variant must never be merged (``Inspector``
decides what may share a run). The whole mechanism is this module.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable


class Overloaded(RuntimeError):
    """The queue is full (or the service is stopping); ``retry_after`` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class Entry:
    job: Any
    size: int
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """See the module docstring. ``score(jobs) -> results`` (one per job, in order) runs in the thread;
    ``observe(batch_images, queue_depth, seconds)`` is told about every batch (metrics)."""

    def __init__(self, score: Callable[[list[Any]], list[Any]], *, max_batch: int = 16, wait_s: float = 0.02,
                 queue_size: int = 64, max_reading: int = 8, observe: Callable[[int, int, float], None] | None = None):
        self._score, self.max_batch, self.wait_s, self.queue_size = score, max_batch, wait_s, queue_size
        self.max_reading, self._reserved = max_reading, 0
        self._observe = observe or (lambda *_: None)
        self._waiting: collections.deque[Entry] = collections.deque()
        self._cv = threading.Condition()
        self._closing = False
        self._seconds = collections.deque(maxlen=20)  # recent batch times, for Retry-After
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name="zsad-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting (not started)."""
        return len(self._waiting)

    def reserve(self) -> None:
        """Hold a place in the queue for a request whose body is about to be read. Raises
        ``Overloaded`` when the queue (waiting plus reserved) is full, when ``max_reading``
        places are already held, or while stopping."""
        with self._cv:
            if self._closing:
                raise Overloaded("the service is shutting down", self.retry_after())
            if len(self._waiting) + self._reserved >= self.queue_size:
                raise Overloaded(f"{len(self._waiting)} requests are waiting and {self._reserved} being read "
                                 f"(--queue-size {self.queue_size})", self.retry_after())
            if self._reserved >= self.max_reading:
                raise Overloaded(f"{self._reserved} uploads are being read (--max-reading {self.max_reading})",
                                 self.retry_after())
            self._reserved += 1

    def release(self) -> None:
        """Give back a place ``reserve`` held (the request was refused before it was queued)."""
        with self._cv:
            self._reserved = max(0, self._reserved - 1)

    def submit(self, job: Any, size: int = 1, *, reserved: bool = False) -> Entry:
        """Queue ``job`` (``size`` images) in a place ``reserve`` held (``reserved``) or a free
        one; its ``future`` gets the result. Raises ``Overloaded`` (the place is given back)."""
        with self._cv:
            if reserved:
                self._reserved = max(0, self._reserved - 1)
            if self._closing:
                raise Overloaded("the service is shutting down", self.retry_after())
            if not reserved and len(self._waiting) + self._reserved >= self.queue_size:
                raise Overloaded(f"{len(self._waiting)} requests are waiting (--queue-size {self.queue_size})",
                                 self.retry_after())
            entry = Entry(job, size)
            self._waiting.append(entry)
            self._cv.notify()
        return entry

    def cancel(self, entry: Entry) -> bool:
        """Drop ``entry`` if it has not started; True if it was dropped."""
        with self._cv:
            if entry in self._waiting:
                self._waiting.remove(entry)
                entry.future.cancel()
                return True
        return False

    def retry_after(self) -> int:
        """Seconds until the queue is likely worked off (at least 1)."""
        per_batch = sum(self._seconds) / len(self._seconds) if self._seconds else 1.0
        return max(1, math.ceil(per_batch * (1 + len(self._waiting) / max(1, self.max_batch))))

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)

    def _take(self) -> list[Entry] | None:
        """The next batch: the oldest job, and those that arrive within ``wait_s``, up to ``max_batch`` images."""
        with self._cv:
            while not self._waiting:
                if self._closing:
                    return None
                self._cv.wait()
            batch = [self._waiting.popleft()]
            images, deadline = batch[0].size, time.monotonic() + self.wait_s
            while images < self.max_batch:
                if self._waiting:
                    if images + self._waiting[0].size > self.max_batch:
                        break
                    batch.append(self._waiting.popleft())
                    images += batch[-1].size
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    break
                self._cv.wait(left)
            return [e for e in batch if e.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            t0, self.busy = time.monotonic(), True
            try:
                results = self._score([e.job for e in batch])
                for e, res in zip(batch, results):
                    e.future.set_result(res)
            except BaseException as exc:  # noqa: BLE001 - every waiting client is answered
                for e in batch:
                    if not e.future.done():
                        e.future.set_exception(exc)
            finally:
                self.busy = False
                seconds = time.monotonic() - t0
                self._seconds.append(seconds)
                self._observe(sum(e.size for e in batch), len(self._waiting), seconds)

"""The service's batcher: gathering within the wait, the image bound, the queue bound, a client
that leaves, a graceful close (a fake scorer: no model)."""

from __future__ import annotations

import threading
import time

import pytest

from zsad.serve.batcher import Batcher, Overloaded


class Recorder:
    """A scorer that records each batch and can be held until released."""

    def __init__(self, hold: bool = False):
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, jobs):
        self.started.set()
        self.release.wait(10)
        self.batches.append(list(jobs))
        return [f"done {j}" for j in jobs]


def test_jobs_arriving_within_the_wait_share_one_batch():
    rec = Recorder()
    b = Batcher(rec, max_batch=8, wait_s=0.5)
    entries = [b.submit(name) for name in ("a", "b", "c")]
    assert [e.future.result(10) for e in entries] == ["done a", "done b", "done c"]
    b.close(10)
    assert rec.batches == [["a", "b", "c"]]


def test_a_batch_holds_at_most_max_batch_images_and_order_is_kept():
    rec = Recorder(hold=True)
    b = Batcher(rec, max_batch=4, wait_s=0.3)
    first = b.submit("first", size=1)
    assert rec.started.wait(10)  # "first" is being scored; the rest queue behind it
    rest = [b.submit(n, size=2) for n in ("x", "y", "z")]
    rec.release.set()
    assert [e.future.result(10) for e in [first, *rest]] == ["done first", "done x", "done y", "done z"]
    b.close(10)
    assert rec.batches == [["first"], ["x", "y"], ["z"]]


def test_a_full_queue_refuses_with_retry_after_and_a_cancelled_job_frees_its_slot():
    rec = Recorder(hold=True)
    b = Batcher(rec, max_batch=1, wait_s=0.0, queue_size=2)
    running = b.submit("running")
    assert rec.started.wait(10)
    waiting = [b.submit("w1"), b.submit("w2")]
    with pytest.raises(Overloaded) as exc:
        b.submit("w3")
    assert exc.value.retry_after >= 1 and "--queue-size 2" in str(exc.value)
    assert b.cancel(waiting[0]) and waiting[0].future.cancelled() and b.depth == 1
    late = b.submit("w3")  # the freed slot
    rec.release.set()
    assert [e.future.result(10) for e in (running, waiting[1], late)] == ["done running", "done w2", "done w3"]
    assert not b.cancel(running)  # a started (here: finished) job is not taken back
    b.close(10)
    assert [j for batch in rec.batches for j in batch] == ["running", "w2", "w3"]


def test_close_finishes_what_is_queued_then_refuses():
    rec = Recorder(hold=True)
    b = Batcher(rec, max_batch=1, wait_s=0.0)
    entries = [b.submit(n) for n in ("a", "b", "c")]
    assert rec.started.wait(10)
    closer = threading.Thread(target=b.close, args=(10,))
    closer.start()
    time.sleep(0.1)
    with pytest.raises(Overloaded, match="shutting down"):
        b.submit("late")
    rec.release.set()
    closer.join(10)
    assert [e.future.result(0) for e in entries] == ["done a", "done b", "done c"]


def test_a_scorer_that_raises_answers_every_job_of_its_batch():
    def boom(jobs):
        raise RuntimeError("scorer failed")
    b = Batcher(boom, max_batch=4, wait_s=0.3)
    entries = [b.submit(n) for n in ("a", "b")]
    for e in entries:
        with pytest.raises(RuntimeError, match="scorer failed"):
            e.future.result(10)
    b.close(10)

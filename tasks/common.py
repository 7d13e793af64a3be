"""zsad tasks: plain functions, made Prefect tasks only inside a flow run.

The store is the cache, so Prefect caches nothing and persists no results (tasks return only
keys and small error records). A task fails as a whole only for errors that concern every image
(a missing weights file, an unusable store); one bad image is recorded and the others go on,
so Prefect's retry is kept for the whole-task case. Nothing here imports Prefect until a flow
run calls a task: the service, the workers and ``predict`` never load it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable


class ZsadTask:
    """A zsad task: ``fn`` (the plain function) and, made on first use in a flow run,
    its Prefect task (``prefect_task``: no cache, no persisted result, one retry)."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn, self.name, self._task = fn, name, None
        functools.update_wrapper(self, fn)

    def prefect_task(self) -> Any:
        if self._task is None:
            from prefect import task
            from prefect.cache_policies import NO_CACHE
            self._task = task(name=self.name, cache_policy=NO_CACHE, persist_result=False, retries=1,
                              retry_delay_seconds=2)(self.fn)
        return self._task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return call(self, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """The Prefect task submitted to the flow run's task runner."""
        return self.prefect_task().submit(*args, **kwargs)


def zsad_task(name: str) -> Callable[[Callable[..., Any]], ZsadTask]:
    return lambda fn: ZsadTask(fn, name)


def in_flow_run() -> bool:
    """Whether a Prefect flow run is in progress here (False, without importing Prefect, when
    Prefect was never loaded)."""
    import sys
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext
    return FlowRunContext.get() is not None


def call(task_obj: ZsadTask, *args: Any, **kwargs: Any) -> Any:
    """Run a zsad task: as a Prefect task inside a flow run (visible in the UI, retried), as the
    plain function outside one (no Prefect API, no ephemeral server start)."""
    if in_flow_run():
        return task_obj.prefect_task()(*args, **kwargs)
    return task_obj.fn(*args, **kwargs)

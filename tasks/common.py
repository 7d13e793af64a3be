"""Prefect decorator defaults for zsad tasks, and how flows call them.

The store is the cache, so Prefect caches nothing and persists no results (tasks return only
keys and small error records). A task fails as a whole only for errors that concern every image
(a missing weights file, an unusable store); one bad image is recorded and the others go on,
so Prefect's retry is kept for the whole-task case.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE


def zsad_task(name: str):
    return task(name=name, cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2)


def call(task_obj: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a zsad task: as a Prefect task inside a flow run (visible in the UI, retried), as the
    plain function outside one (no Prefect API, no ephemeral server start)."""
    from prefect.context import FlowRunContext
    if FlowRunContext.get() is not None:
        return task_obj(*args, **kwargs)
    return task_obj.fn(*args, **kwargs)

"""Prefect decorator defaults for zsad tasks: the store is the cache, so Prefect caches nothing
and persists no results (tasks return only keys)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE


def zsad_task(name: str):
    return task(name=name, cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2)

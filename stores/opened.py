"""The stores this process has open: one ``StageStore`` per URL, shared by every task and
thread (its unit index and backend caches are per process), and its read-only view.

Example:
    >>> import tempfile
    >>> url = tempfile.mkdtemp() + "/s.zarr"
    >>> open_store(url) is open_store(url), open_store(url, read_only=True).read_only
    (True, True)
"""

from __future__ import annotations

import threading

from .zarr_store import StageStore

_STORES: dict[tuple[str, bool], StageStore] = {}
_LOCK = threading.RLock()


def open_store(url: str, *, read_only: bool = False) -> StageStore:
    """This process's store at ``url`` (opened on first use); ``read_only``: its view that
    refuses writes, sharing the store's index and backend."""
    with _LOCK:
        if (url, read_only) not in _STORES:
            _STORES[(url, read_only)] = open_store(url).read_only_view() if read_only else StageStore(url)
        return _STORES[(url, read_only)]


def reopen(url: str, read_only: bool) -> StageStore:
    """``open_store`` with positional arguments: what an unpickled ``StageStore`` calls."""
    return open_store(url, read_only=read_only)


def opened() -> list[StageStore]:
    with _LOCK:
        return list(_STORES.values())


def forget_stores() -> None:
    """Close nothing, forget everything: the next ``open_store`` opens afresh (tests)."""
    with _LOCK:
        _STORES.clear()

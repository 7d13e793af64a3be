"""The stores this process has open (``open_store``: one ``StageStore`` per URL, shared by
every task and thread, and its read-only view); declared beside ``StageStore``, whose unpickling
reopens through them.

Example:
    >>> import tempfile
    >>> url = tempfile.mkdtemp() + "/s.zarr"
    >>> open_store(url) is open_store(url), open_store(url, read_only=True).read_only
    (True, True)
"""

from __future__ import annotations

from .zarr_store import forget_stores, open_store, opened, reopen

__all__ = ["forget_stores", "open_store", "opened", "reopen"]

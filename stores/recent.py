"""Units this process wrote or read lately, kept in memory (object storage): a precompute
shard's later stages read what its earlier stages just wrote (foreground reads IS-Net and SAM,
tiles reads foreground, CLIP and CLIPSeg read tiles), and each such read would be a round trip.

Bounded by ``ZSAD_RECENT_UNITS_MB`` (default 512; least recently used first out); a unit larger
than a quarter of it is not kept. ``clear()`` at each shard's start (``zsad.tasks.worker.start_shard``). Reads
get copies: a caller may change what it got.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

import numpy as np

LIMIT_BYTES = int(os.environ.get("ZSAD_RECENT_UNITS_MB", "512")) * 2 ** 20


class RecentUnits:
    """``key -> (attrs, {array name: array})``, least recently used evicted past ``limit_bytes``."""

    def __init__(self, limit_bytes: int = LIMIT_BYTES) -> None:
        self.limit = limit_bytes
        self._units: collections.OrderedDict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = \
            collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(arrays: dict[str, np.ndarray]) -> int:
        return sum(a.nbytes for a in arrays.values())

    def put(self, key: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray], merge: bool = False) -> None:
        """Keep a unit (``merge``: add ``arrays`` to what is kept of the same unit)."""
        with self._lock:
            old = self._units.pop(key, None)
            if old is not None:
                self._bytes -= self._size(old[1])
                if merge:
                    arrays = {**old[1], **arrays}
            size = self._size(arrays)
            if size > self.limit // 4:
                return
            self._units[key] = (dict(attrs), dict(arrays))
            self._bytes += size
            while self._bytes > self.limit and self._units:
                _, (_, dropped) = self._units.popitem(last=False)
                self._bytes -= self._size(dropped)

    def attrs(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            got = self._units.get(key)
            if got is None:
                return None
            self._units.move_to_end(key)
            return dict(got[0])

    def arrays(self, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """Copies of ``names``' arrays when all are kept, else None."""
        with self._lock:
            got = self._units.get(key)
            if got is None or any(n not in got[1] for n in names):
                return None
            self._units.move_to_end(key)
            return {n: np.array(got[1][n]) for n in names}

    def drop(self, key: str) -> None:
        with self._lock:
            old = self._units.pop(key, None)
            if old is not None:
                self._bytes -= self._size(old[1])

    def clear(self) -> None:
        with self._lock:
            self._units.clear()
            self._bytes = 0

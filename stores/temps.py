"""Temp folders of local unit writes: named after their writer, swept when it is dead."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

TMP_PREFIX = ".tmp-"
_HOST = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def _stale(name: str, now: float, mtime: float, max_age_s: float = 86400.0) -> bool:
    """A temp folder left by a dead writer: its process (on this host) is gone, or it is old."""
    parts = name[len(TMP_PREFIX):].rsplit("-", 3)
    if len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit():
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return now - mtime > max_age_s


def sweep_temp_folders(root: Path) -> int:
    """Remove the temp folders of dead writers under ``root``. Looks where units are written:
    down to the split level, not inside units. Returns how many were removed."""
    removed, now, dirs = 0, time.time(), [root]
    for _ in range(6):  # the root, stage, hash, dataset, class and split folders
        deeper = []
        for d in dirs:
            for entry in os.scandir(d):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name.startswith(TMP_PREFIX):
                    if _stale(entry.name, now, entry.stat().st_mtime):
                        shutil.rmtree(entry.path, ignore_errors=True)
                        removed += 1
                elif not entry.name.startswith("."):
                    deeper.append(entry.path)
        dirs = deeper
    return removed

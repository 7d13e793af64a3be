"""Subprocesses of tests that are stopped, with everything they started, whatever happens.

Each runs in a process group of its own (``start_new_session``), so ``kill_group`` (``kill -9``
of the group) also ends what it started: a Prefect server's uvicorn, a Dask worker, a browser.

Example:
    >>> import sys
    >>> with spawned([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
    ...     pass                    # the test fails or returns here: the group is killed
    >>> proc.poll() is not None
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Iterator, Sequence


def dead_pid() -> int:
    """The pid of a process that has exited (a writer killed mid-unit, for the temp-folder sweeps)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def kill_group(proc: subprocess.Popen) -> None:
    """``kill -9`` the process group of ``proc`` (its children too) and reap ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@contextlib.contextmanager
def spawned(args: Sequence[str], **popen) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen(args, **popen)`` in a new session; its group is killed on leaving."""
    proc = subprocess.Popen(list(args), start_new_session=True, **popen)
    try:
        yield proc
    finally:
        kill_group(proc)

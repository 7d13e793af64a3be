"""Processes the test session started and left running.

Every process a test starts (a server, a cluster, a CLI run, a browser) inherits the session's
mark, ``ZSAD_TEST_SESSION=<pid>-<random>`` in its environment, through pytest-xdist's workers
and every subprocess below them, also after its parent dies and it is re-parented. At the end of
the session the process that set the mark looks for live processes carrying it; each one is a
leak, reported by pid and command line and then killed, and the session fails.
"""

from __future__ import annotations

import os
import time
import uuid

MARK = "ZSAD_TEST_SESSION"


def mark_session() -> bool:
    """Set the mark unless an outer session already did; True when this process owns it."""
    if MARK in os.environ:
        return os.environ[MARK].split("-", 1)[0] == str(os.getpid())
    os.environ[MARK] = f"{os.getpid()}-{uuid.uuid4().hex}"
    return True


def marked_processes() -> list:
    """Live processes (zombies aside) carrying this session's mark, this process and its
    ancestors excluded."""
    import psutil
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid in skip or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get(MARK) == os.environ.get(MARK):
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
    return found


def _alive(proc) -> bool:
    import psutil
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(proc) -> str:
    try:
        return f"pid {proc.pid} (parent {proc.ppid()}): {' '.join(proc.cmdline())[:300]}"
    except Exception:  # noqa: BLE001 - it may have ended meanwhile
        return f"pid {proc.pid}: ended while being described"


def reap_leftovers(grace_s: float = 15.0) -> list[str]:
    """Wait up to ``grace_s`` for marked processes to end (workers still shutting down); then
    describe and kill those left. Returns their descriptions (empty: nothing leaked)."""
    import psutil
    deadline = time.monotonic() + grace_s
    left = marked_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [p for p in left if _alive(p)]
    described = [describe(p) for p in left]
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return described

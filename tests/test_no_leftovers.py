"""Nothing left running: ``zsad precompute`` and ``zsad aggregate`` on a real ``dask scheduler``
with two ``dask worker`` processes end without a process of theirs alive (before, each worker
started Prefect's ephemeral API server, which outlived the workers), and a command stopped by
SIGTERM stops what it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from procs import spawned

pytestmark = [pytest.mark.slow, pytest.mark.server]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1"}


def _prefect_servers(home: Path) -> list[str]:
    """Prefect API servers of this test (its ``PREFECT_HOME``; any owner: an orphan has parent 1)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or ())
            if "prefect.server.api.server" in cmd and p.environ().get("PREFECT_HOME") == str(home):
                found.append(f"pid {p.pid} (parent {p.ppid()}): {cmd[:160]}")
        except (psutil.Error, OSError):
            continue
    return found


def _group(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def test_commands_on_a_real_cluster_leave_no_process(synthetic_root, tmp_path):
    env, home = _env(tmp_path), tmp_path / "prefect-home"
    sched_file = tmp_path / "scheduler.json"
    with spawned([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                  "127.0.0.1:0", "--scheduler-file", str(sched_file)], env=env, cwd=tmp_path,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as scheduler:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        with spawned([str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                      "--dashboard-address", "127.0.0.1:0"], env=env, cwd=tmp_path,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as workers:
            store = str(tmp_path / "s.zarr")
            for args in (["precompute", "--dataset", "synthetic", "--root", str(synthetic_root)],
                         ["aggregate", "--dataset", "synthetic"]):
                done = subprocess.run([str(BIN / "zsad"), *args, "--store", store, "--dask-address", address],
                                      env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, done.stderr[-3000:]
                assert _prefect_servers(home) == [], args
            cluster = {p.pid for p in _group(scheduler.pid) + _group(workers.pid)}
        assert _prefect_servers(home) == []
    time.sleep(1)
    assert [p.pid for p in psutil.process_iter() if p.pid in cluster and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE] == []


def test_prefect_on_a_cluster_without_a_server_is_refused(tmp_path, synthetic_root):
    done = subprocess.run([str(BIN / "zsad"), "precompute", "--prefect", "--dataset", "synthetic", "--root",
                           str(synthetic_root), "--store", str(tmp_path / "s.zarr"), "--dask-address",
                           "tcp://127.0.0.1:1"], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "PREFECT_API_URL" in done.stderr


def test_a_command_stopped_by_sigterm_stops_what_it_started(synthetic_root, tmp_path):
    """``--prefect`` starts Prefect's ephemeral API server as a child; SIGTERM mid-run ends both."""
    home = tmp_path / "prefect-home"
    with spawned([str(BIN / "zsad"), "precompute", "--prefect", "--dataset", "synthetic", "--root",
                  str(synthetic_root), "--store", str(tmp_path / "s.zarr")], env=_env(tmp_path), cwd=tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        deadline = time.monotonic() + 120
        while not _prefect_servers(home) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _prefect_servers(home), "the ephemeral server did not start"
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
        out = proc.stdout.read()
    assert rc == 130 and "interrupted" in out, out[-2000:]
    deadline = time.monotonic() + 20
    while _prefect_servers(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _prefect_servers(home) == []

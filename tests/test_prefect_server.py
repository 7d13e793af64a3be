"""prefect.yaml against a real Prefect server: deploy, the scheduler creates the nightly runs, a
worker runs one on synthetic data with the tiny config, and its artifacts exist.

Skipped only when ``prefect server start`` does not answer on 127.0.0.1 (the reason is given).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from zsad.flows.cli import main
from requires import unavailable
from zsad.tasks import worker

pytestmark = [pytest.mark.slow, pytest.mark.server]

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
               PREFECT_LOGGING_LEVEL="INFO")
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = env["PREFECT_API_URL"]
    try:
        for _ in range(120):
            if proc.poll() is not None:
                break
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pass
        try:
            ok = httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            unavailable(f"prefect server start did not answer on 127.0.0.1:{port}: "
                        f"{(home / 'server.log').read_text()[-500:]}")
        yield env, api, home
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _prefect(env, *args, timeout=180, cwd=ROOT) -> subprocess.CompletedProcess:
    out = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _post(api: str, path: str, body: dict) -> list[dict]:
    r = httpx.post(f"{api}/{path}", json=body, timeout=10)
    r.raise_for_status()
    return r.json()


def test_deploy_schedule_and_worker_run_on_a_real_server(server, synthetic_root, tmp_path):
    env, api, home = server
    line = tmp_path / "line"
    line.mkdir()
    for p in sorted((Path(synthetic_root) / "pill" / "test").rglob("*.png")):
        shutil.copy(p, line / f"{p.parent.name}_{p.name}")
    (line / "broken.png").write_bytes(b"not a png")
    store, out = str(tmp_path / "store.zarr"), tmp_path / "runs"
    deploy_env = dict(env, ZSAD_HOME=str(ROOT), ZSAD_STORE=store, ZSAD_CONFIG="tiny", ZSAD_LINE_ROOT=str(line),
                      ZSAD_LINE_CLASS="pill", ZSAD_OUT=str(out))
    _prefect(env, "work-pool", "create", "zsad-pool", "--type", "process")

    # Without a stored threshold the deploy itself refuses, naming the fix: nothing fails at 2 a.m.
    refused = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], env=deploy_env, cwd=ROOT,
                             capture_output=True, text=True, timeout=180)
    assert refused.returncode != 0 and "zsad calibrate" in refused.stdout + refused.stderr

    worker.forget_stores()
    good = str(Path(synthetic_root) / "pill" / "test" / "good")
    assert main(["calibrate", "--good", good, "--class", "pill", "--store", store]) == 0
    _prefect(deploy_env, "--no-prompt", "deploy", "--all")

    deps = {d["name"]: d for d in _post(api, "deployments/filter", {})}
    assert {"nightly-line-scoring", "reaggregate-grid", "evaluate"} <= set(deps)
    nightly = deps["nightly-line-scoring"]
    assert nightly["parameters"]["request"]["root"] == str(line) and \
        nightly["parameters"]["request"]["config"] == "tiny"
    scheduled = []
    for _ in range(60):  # the scheduler service creates the cron runs (2 s loop here)
        scheduled = _post(api, "flow_runs/filter", {"deployments": {"id": {"any_": [nightly["id"]]}},
                                                   "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
        if scheduled:
            break
        time.sleep(1)
    assert scheduled, "the scheduler created no run for the cron deployment"
    assert all(r["expected_start_time"][11:16] == "02:00" for r in scheduled)

    run = _prefect(env, "deployment", "run", "zsad-nightly/nightly-line-scoring")
    run_id = next(line.split()[-1] for line in run.stdout.splitlines() if "UUID" in line)
    _prefect(env, "worker", "start", "--pool", "zsad-pool", "--run-once", timeout=400, cwd=tmp_path)
    state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
    assert state["type"] == "COMPLETED", state
    arts = _post(api, "artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert {"table", "markdown"} <= {a["type"] for a in arts}  # (plus the persisted result)
    summary = next(a for a in arts if a["type"] == "markdown")["data"]
    assert "scored: **4**" in summary and "broken.png" in summary
    csvs = list(out.rglob("scores.csv"))
    assert len(csvs) == 1 and len(csvs[0].read_text().splitlines()) == 1 + 5

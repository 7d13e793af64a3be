"""``zsad watch`` scores a slowly copied file exactly once and goes on past a bad one; a
``kill -9`` of ``zsad serve`` mid-batch leaves the store whole and a restart answers the same."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import copy_store
from procs import spawned
from units import complete_units
from zsad.serve.inline_requests import WatchRequest
from zsad.serve.sinks import read_audit
from zsad.serve.watch import run_watch


@pytest.fixture(scope="module")
def store(calibrated_copy):
    return calibrated_copy


@pytest.mark.slow
def test_watch_scores_a_slow_copy_once_and_goes_on_past_a_bad_file(store, synthetic_root, tmp_path):
    folder, out = tmp_path / "line", tmp_path / "watch"
    folder.mkdir()
    pills = sorted((Path(synthetic_root) / "pill" / "test").rglob("*.png"))
    r = WatchRequest(folder=str(folder), class_name="pill", store=store, out=str(out), settle_s=1.0, timeout_s=14)
    result = {}
    watcher = threading.Thread(target=lambda: result.update(run_watch(r)))
    watcher.start()
    time.sleep(1.0)
    data = pills[2].read_bytes()
    with open(folder / "slow.png", "wb") as f:  # written in 4 parts over 1.8 s: never still for 1 s
        for k in range(4):
            f.write(data[k * len(data) // 4:(k + 1) * len(data) // 4])
            f.flush()
            time.sleep(0.6)
    (folder / "junk.png").write_text("not an image")
    time.sleep(2.5)
    shutil.copy(pills[0], folder / "after.png")  # scored: the watch went on
    watcher.join(60)
    audit = {}
    for a in read_audit(out / "audit.jsonl"):
        audit.setdefault(Path(a["file"]).name, []).append(a)
    assert sorted(audit) == ["after.png", "junk.png", "slow.png"] and all(len(v) == 1 for v in audit.values())
    assert audit["junk.png"][0]["decision"] == "error" and "not a readable image" in audit["junk.png"][0]["error"]
    assert audit["slow.png"][0]["score"] is not None and audit["after.png"][0]["score"] is not None
    assert result["n_scored"] == 2 and result["n_failed"] == 1
    # keyed as the nightly flow keys files: a second pass scores nothing again (the failed file is
    # retried, as the nightly flow retries it: it may have been fixed)
    again = run_watch(WatchRequest(folder=str(folder), class_name="pill", store=store, out=str(out), once=True))
    assert (again["n_scored"], again["n_failed"]) == (0, 1)


def _serve(store: str, out: Path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return spawned([sys.executable, "-m", "zsad.flows.cli", "serve", "--store", store, "--out", str(out), "--port", "0",
                    "--classes", "pill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _url(out: Path, proc, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "serve.json").exists():
            info = json.loads((out / "serve.json").read_text())
            if info["pid"] == proc.pid:
                return info["url"]
        time.sleep(0.2)
    raise AssertionError(f"zsad serve did not start (exit {proc.poll()})")


def _post(url: str, files: list[Path]):
    return httpx.post(f"{url}/v1/predict", data={"class": "pill"}, timeout=300,
                      files=[("files", (p.name, p.read_bytes(), "image/png")) for p in files])


@pytest.mark.slow
def test_kill_minus_9_mid_batch_leaves_the_store_whole_and_a_restart_answers_the_same(store, synthetic_root,
                                                                                      tmp_path):
    crashed, clean = copy_store(store, tmp_path / "crashed.zarr"), copy_store(store, tmp_path / "clean.zarr")
    files = sorted((Path(synthetic_root) / "pill" / "test").rglob("*.png"))
    out = tmp_path / "serve"
    with _serve(crashed, out) as proc:
        url = _url(out, proc)
        before = complete_units(crashed)
        threading.Thread(target=lambda: _try(_post, url, files), daemon=True).start()
        deadline = time.monotonic() + 120
        while len(complete_units(crashed) - before) < 2 and time.monotonic() < deadline:  # mid-batch
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    after = complete_units(crashed)  # every complete unit reads whole
    assert before < after
    # a unit being written when the kill landed is a temp folder named after the dead writer
    assert all(f"-{proc.pid}-" in p.name for p in Path(crashed).rglob(".tmp-*"))
    assert not [p for p in (out / "uploads").iterdir() if p.name.endswith(".tmp")]
    with _serve(crashed, out / "again") as proc:
        url = _url(out / "again", proc)
        assert not list(Path(crashed).rglob(".tmp-*"))  # the restart swept it before serving
        answers = _post(url, files).json()["results"]
    with _serve(clean, out / "clean") as proc:
        expected = _post(_url(out / "clean", proc), files).json()["results"]
    assert [(a["file"], a["score"], a["decision"]) for a in answers] == [
        (e["file"], e["score"], e["decision"]) for e in expected]


def _try(fn, *args):
    try:
        fn(*args)
    except httpx.HTTPError:
        pass  # the server was killed under it

"""The session-end check finds what a session left running, also re-parented, and kills it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A session of its own: marks itself, leaves one sleeper running (in a new session, so it is
# re-parented when its parent exits) and lets another end, then runs the check.
SESSION = r"""
import json, subprocess, sys, time
import leftovers
assert leftovers.mark_session()
leaked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
done = subprocess.Popen([sys.executable, "-c", "pass"]); done.wait()
found = leftovers.reap_leftovers(grace_s=1.0)
time.sleep(0.2)
print(json.dumps({"found": found, "leaked": leaked.pid, "alive": leaked.poll() is None}))
"""


def test_the_check_reports_and_kills_what_a_session_left_running():
    env = {k: v for k, v in os.environ.items() if k != "ZSAD_TEST_SESSION"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", SESSION], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["found"]) == 1 and got["found"][0].startswith(f"pid {got['leaked']} ")
    assert "time.sleep(120)" in got["found"][0] and not got["alive"]


def test_a_nested_session_does_not_own_the_mark(monkeypatch):
    """A pytest run inside the suite (the portability check) leaves the check to the outer one."""
    import leftovers
    monkeypatch.setenv(leftovers.MARK, "1-outer")
    assert leftovers.mark_session() is False
    monkeypatch.setenv(leftovers.MARK, f"{os.getpid()}-mine")
    assert leftovers.mark_session() is True

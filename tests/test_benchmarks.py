"""Every benchmark runs: each script in ``benchmarks/`` has a ``--quick`` mode (tiny sizes,
seconds to a few minutes) and this slow-tier test runs it, so a script cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = {"oldrev.py", "common.py", "record.py"}  # imported by the scripts or wrapping them, not benchmarks
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name not in HELPERS)


def test_every_benchmark_declares_a_quick_mode():
    missing = [s for s in SCRIPTS if '"--quick"' not in (ROOT / "benchmarks" / s).read_text()]
    assert not missing, f"benchmarks without --quick: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_HOME=str(tmp_path / "prefect"))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{script} --quick failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"{script} --quick printed nothing"

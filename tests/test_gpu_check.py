"""``benchmarks/gpu_check.sh --dry-run``: every step of the GPU check runs on the CPU at tiny
sizes, so the script a lent GPU runs cannot rot before one comes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("sam", "sam_equality", "models_exact", "models_batched", "musc", "pixel_metrics", "serve")


@pytest.mark.slow
def test_the_gpu_check_dry_run_runs_every_step(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    steps = (tmp_path / "steps.txt").read_text()
    assert done.returncode == 0, steps + done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 step(s) failed" in steps and "torch" in (tmp_path / "env.txt").read_text()
    for name in STEPS:
        text = (tmp_path / f"{name}.md").read_text()
        assert f"{name} rc=0" in steps and "|---" in text and "Traceback" not in text, (name, text[-2000:])

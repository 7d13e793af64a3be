"""Memory bounded per image: scoring a 12-megapixel image with the tiny models costs well under
what it did (SAM's survivors were upsampled 64 at a time to full resolution and kept unpacked,
every kept mask was unpacked at once for the foreground, the panel was drawn at full size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_12_megapixel_image_costs_under_1_5_gb():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--one", "tiny", "12"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    assert m["pixels"] >= 11.9e6
    assert m["growth_mb"] < 1500, m  # before: about 580 MB per megapixel, ~7 GB here

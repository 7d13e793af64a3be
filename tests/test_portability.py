"""The cross-path tests (marker ``crosspath``) again, in a subprocess on other CPU kernels:

- OpenBLAS on another core type (``OPENBLAS_CORETYPE``: Sandybridge's AVX kernels without FMA on
  x86-64, where this machine runs Haswell or newer; the generic ARMV8 ones on arm64);
- numpy's dispatched SIMD features off (``NPY_DISABLE_CPU_FEATURES``: every dispatch target this
  CPU has beyond numpy's baseline, by the names numpy itself reports);
- torch's kernels at their lowest level (``ATEN_CPU_CAPABILITY=default``, MKL at SSE4.2, oneDNN
  at SSE4.1) on x86-64.

The two paths of each test must agree there as here. And tile scores, which use no BLAS and no
order-dependent sum (``zsad.scoring``), are the same bits in both processes.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Prints the kernels a process runs, then a fingerprint of tile scores on fixed inputs.
PROBE = r"""
import json, numpy as np, torch
from threadpoolctl import threadpool_info
from numpy._core._multiarray_umath import __cpu_features__
from zsad.scoring import tile_scores
rng = np.random.default_rng(7)
emb = rng.standard_normal((106, 64)).astype(np.float32)
text = rng.standard_normal((882, 64)).astype(np.float32)
scores = tile_scores(emb, text, rng.random(882) < 0.5, 100.0)
blas = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
print(json.dumps({"openblas": blas, "numpy_on": sorted(k for k, v in __cpu_features__.items() if v),
                  "torch": torch.backends.cpu.get_cpu_capability(), "scores": scores.tobytes().hex()}))
"""


def _probe(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def other_kernels(here: dict) -> dict[str, str]:
    """Environment variables that move this process's BLAS, numpy and torch to other kernels."""
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    env = {}
    arch = (here["openblas"] or [None])[0]
    if platform.machine().lower() in ("x86_64", "amd64"):
        env["OPENBLAS_CORETYPE"] = "Nehalem" if arch == "Sandybridge" else "Sandybridge"
        env.update(ATEN_CPU_CAPABILITY="default", MKL_ENABLE_INSTRUCTIONS="SSE4_2", ONEDNN_MAX_CPU_ISA="SSE41")
    elif platform.machine().lower() in ("aarch64", "arm64"):
        env["OPENBLAS_CORETYPE"] = "CORTEXA57" if (arch or "").upper() == "ARMV8" else "ARMV8"
        env["ATEN_CPU_CAPABILITY"] = "default"
    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f) and f not in __cpu_baseline__]
    if found:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(found)
    return env


def _clean_env() -> dict[str, str]:
    """This process's environment less what ties a process to this pytest-xdist worker."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OPENBLAS_CORETYPE"))}


def _count_collected(text: str) -> int:
    """Tests listed by ``--collect-only``: node ids (``-q``) or ``file: N`` lines (``-qq``)."""
    ids = sum("::" in line for line in text.splitlines())
    per_file = sum(int(m.group(1)) for m in re.finditer(r"^\S+\.py: (\d+)$", text, re.M))
    return ids or per_file


def test_cross_path_tests_pass_on_other_kernels():
    base = _clean_env()
    here = _probe(base)
    moved = other_kernels(here)
    there = _probe({**base, **moved})
    # the subprocess really runs other kernels
    if here["openblas"]:
        assert there["openblas"] != here["openblas"], (here["openblas"], there["openblas"], moved)
    disabled = moved.get("NPY_DISABLE_CPU_FEATURES", "").split()
    assert not set(disabled) & set(there["numpy_on"]), there["numpy_on"]
    if "ATEN_CPU_CAPABILITY" in moved:
        assert there["torch"] == "DEFAULT", there["torch"]
    # tile scores: the same bits on other BLAS and SIMD kernels
    assert there["scores"] == here["scores"]
    # every cross-path test, under those kernels (the tests that need a cluster or a browser stay here)
    select = ["-m", "crosspath and not server and not browser", "-p", "no:cacheprovider", "tests"]
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", *select], env=base,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    expected = _count_collected(listed.stdout)
    assert expected >= 1, listed.stdout[-2000:] + listed.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "--no-header", *select],
                         env={**base, **moved}, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    tail = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, f"under {moved}:\n{tail}"
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) == expected, f"{expected} cross-path tests, but:\n{tail}"

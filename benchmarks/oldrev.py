"""The code at an older revision next to this checkout, for old-vs-new benchmarks in one run."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(work: Path, rev: str, runner: Path, runner_name: str) -> Path:
    """``git archive`` of ``rev`` under ``work`` (once), with ``runner`` (this checkout's
    benchmark script) copied in as ``benchmarks/<runner_name>`` to run its steps there."""
    src = work / f"old-{rev}"
    if not src.exists():
        src.mkdir(parents=True)
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=tar, check=True)
    (src / "benchmarks" / runner_name).write_text(runner.read_text())
    return src

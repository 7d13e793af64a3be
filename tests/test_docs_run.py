"""The examples of the README and the documentation run: every shell or Python block carries a
marker saying either that it runs here (``<!-- example: runs -->``: executed against a fresh demo
store) or what it needs that the suite does not have (``<!-- example: needs weights, data -->``;
such blocks are checked for syntax here and for naming only commands and options that exist in
``tests/test_docs_examples.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?:<!-- example: ([^>]*?) -->\n)?```(bash|sh|shell|python)\n(.*?)```", re.S)
NEEDS = {"weights", "data", "gpu", "server", "cluster", "object storage", "prefect server", "install", "a camera folder"}


def blocks() -> list[tuple[str, str, str, str]]:
    """(page, marker, language, code) of every shell and Python block of the pages."""
    return [(p.relative_to(ROOT).as_posix(), m.group(1) or "", m.group(2), m.group(3))
            for p in PAGES for m in FENCE.finditer(p.read_text())]


BLOCKS = blocks()
RUNS = [b for b in BLOCKS if b[1] == "runs"]


def test_every_example_says_whether_it_runs_or_what_it_needs():
    assert len(RUNS) >= 3, "the guide should hold examples that run on the demo's store"
    for page, marker, _, code in BLOCKS:
        needs = {n.strip() for n in marker.removeprefix("needs ").split(",")} if marker.startswith("needs ") else None
        assert marker == "runs" or (needs and needs <= NEEDS), \
            f"{page}: block {code[:60]!r} needs <!-- example: runs --> or <!-- example: needs X --> (X in {sorted(NEEDS)})"


@pytest.mark.parametrize("page,marker,lang,code", [b for b in BLOCKS if b[1] != "runs"],
                         ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_an_example_that_cannot_run_here_is_valid_syntax(page, marker, lang, code):
    if lang == "python":
        compile(code, page, "exec")
    else:
        out = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
        assert out.returncode == 0, f"{page}: {out.stderr}"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A folder holding ``zsad-demo/`` (the demo at 64 px) and ``.venv`` (this interpreter's environment)."""
    work = tmp_path_factory.mktemp("docs-run")
    (work / ".venv").symlink_to(Path(sys.executable).parents[1])
    env = _env(work)
    out = subprocess.run([sys.executable, "-m", "zsad", "demo", "--image-size", "64"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return work


def _env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_HOME=str(work / "prefect"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("page,marker,lang,code", RUNS, ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_an_example_marked_runs_runs_on_the_demo_store(page, marker, lang, code, demo_dir):
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-c", "set -eo pipefail\n" + code]
    out = subprocess.run(cmd, cwd=demo_dir, env=_env(demo_dir), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{page}: the example failed:\n{code}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"

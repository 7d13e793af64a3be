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


def environment(src: Path, venv: Path = ROOT / ".venv") -> Path:
    """A virtual environment for the checkout at ``src``: this checkout's ``venv`` hard-linked
    (no copy of torch), with the files that name this checkout (the editable install's finder,
    the scripts) rewritten to name ``src``. Before the one-name install (``zsad.flows`` ...), the
    old code's packages were top-level: the finder and the ``zsad`` script are written for the
    layout ``src`` has. Returns its ``python``."""
    env = src / ".venv"
    if not env.exists():
        subprocess.run(["cp", "-al", str(venv), str(env)], check=True)
        site = next((env / "lib").glob("python3*/site-packages"))
        flat = not (src / "zsad" / "stages.py").exists() and (src / "flows" / "__init__.py").exists() and \
            "zsad.flows" not in (src / "pyproject.toml").read_text()
        mapping = {n: str(src / n) for n in ("zsad", "flows", "tasks", "stores")} if flat else \
            {"zsad": str(src / "zsad"), **{f"zsad.{n}": str(src / n) for n in ("flows", "serve", "tasks", "stores")
                                           if (src / n).is_dir()}}
        for path in [*site.glob("__editable__*finder.py"), *(env / "bin").iterdir()]:
            if not path.is_file() or path.is_symlink():
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            new = text.replace(str(ROOT), str(src))
            if path.name.endswith("finder.py"):
                new = "\n".join(f"MAPPING: dict[str, str] = {mapping!r}" if line.startswith("MAPPING") else line
                                for line in new.splitlines()) + "\n"
            if path.name == "zsad" and flat:
                new = new.replace("from zsad.flows.cli import main", "from flows.cli import main")
            if new != text:
                path.unlink()  # a hard link: the original stays as it was
                path.write_text(new)
                path.chmod(0o755)
    return env / "bin" / "python"

"""Run one benchmark and keep what it printed as a results file the documentation renders.

    .venv/bin/python benchmarks/record.py bench_dino.py [its options ...]
    .venv/bin/python benchmarks/record.py --as bench_models-sam16 bench_models.py --sam-points 16
    .venv/bin/python benchmarks/record.py scripts/check_install_beside.sh 2.9.1 0.24.1 3.6.29

(a bare name is a Python script in ``benchmarks/``; a path from the repository root may also be a
bash script, such as the install check)

writes ``benchmarks/recorded/<name>.json`` (name: the script's stem, or ``--as``): the command,
the date it started (UTC), the machine (cores, CPU model, Python, torch, numpy), the revision and whether the
working tree had uncommitted changes, wall and CPU seconds of the run (CPU use = CPU seconds /
wall / cores), its exit status, everything it printed, and the Markdown tables in that output
parsed into header and rows. The script's own output is stored as it came: nothing is typed in.
``scripts/render_docs.py`` renders those tables and single cells into the README and ``docs/``.

A file may also be *transcribed* (``"source": "transcribed"``, with a ``note`` saying from where):
output printed on a machine this project no longer has, e.g. the one lent GPU. The renderer
labels such figures as transcribed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "recorded"
NAME = re.compile(r"[a-z][a-z0-9_]*(-[a-z0-9_]+)*")


def parse_tables(text: str) -> list[dict]:
    """The Markdown tables of ``text``: each ``{"header": [...], "rows": [[...], ...]}``, cells stripped.

    A table is a run of lines starting with ``|`` whose second line is the ``|---|`` rule.

    >>> parse_tables("x\\n| a | b |\\n|---|--:|\\n| 1 | 2 |\\n\\n| c |\\n|---|\\n")
    [{'header': ['a', 'b'], 'rows': [['1', '2']]}, {'header': ['c'], 'rows': []}]
    """
    tables, run = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            run.append(line)
            continue
        if len(run) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", run[1].strip()):
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in run]
            tables.append({"header": cells[0], "rows": cells[2:]})
        run = []
    return tables


def machine() -> dict:
    """Cores, CPU model, OS and the versions that decide the kernels."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cores": os.cpu_count(), "cpu": cpu, "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}
    for module in ("torch", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    return info


CODE = ("zsad", "flows", "tasks", "stores", "serve", "pyproject.toml", "benchmarks/common.py", "benchmarks/oldrev.py")


RUNNERS = {".py": ([sys.executable], ".venv/bin/python"), ".sh": (["bash"], "bash")}  # suffix -> (argv, as recorded)


def script_path(script: str) -> str:
    """The script's path from the repository root: ``benchmarks/<name>`` for a bare name.

    >>> script_path("bench_dino.py"), script_path("scripts/check_install_beside.sh")
    ('benchmarks/bench_dino.py', 'scripts/check_install_beside.sh')
    """
    return script if "/" in script else f"benchmarks/{script}"


def revision(script: str) -> tuple[str, bool]:
    """(the commit checked out, whether the code ``script`` runs differs from it: the packages, the
    script and its helpers; edits to the docs or to other benchmarks do not count)."""
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE,
                            script_path(script)], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() or "unknown", bool(dirty.stdout.strip())


def record(script: str, args: list[str], *, name: str) -> dict:
    """Run the script (``script_path``) with ``args``, echo its output, and return the results record."""
    rel = script_path(script)
    path = ROOT / rel
    if not path.is_file() or path.suffix not in RUNNERS:
        raise SystemExit(f"record: no benchmark {path}; expected a file name such as bench_dino.py "
                         "or a path such as scripts/check_install_beside.sh")
    runner, shown = RUNNERS[path.suffix]
    rev, dirty = revision(script)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([*runner, str(path), *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    code = proc.wait()
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime - children0.ru_utime - children0.ru_stime
    out = "".join(lines)
    return {"benchmark": name, "source": "recorded",
            "command": " ".join([shown, rel, *args]),
            "date": started, "revision": rev,
            "uncommitted_changes": dirty, "machine": machine(), "wall_s": round(wall, 1),
            "cpu_use": round(cpu / max(wall, 1e-9) / (os.cpu_count() or 1), 3), "exit": code,
            "stdout": out, "tables": parse_tables(out)}


def transcribed(name: str, *, text: str, command: str, note: str, date: str, revision: str) -> dict:
    """A results record for output printed elsewhere (``text``: the tables as printed), saying so."""
    return {"benchmark": name, "source": "transcribed", "note": note, "command": command, "date": date,
            "revision": revision, "machine": {}, "stdout": text, "tables": parse_tables(text)}


def main(argv: list[str]) -> int:
    name = None
    if argv[:1] == ["--as"]:
        if len(argv) < 2 or not NAME.fullmatch(argv[1]):
            raise SystemExit(f"record: --as needs a name like bench_models-cuda, got {argv[1:2]}")
        name, argv = argv[1], argv[2:]
    if not argv or argv[0].startswith("-"):
        raise SystemExit(__doc__)
    script, args = argv[0], argv[1:]
    name = name or Path(script).stem
    result = record(script, args, name=name)
    if result["exit"] != 0:
        print(f"record: {script} exited with {result['exit']}; nothing written", file=sys.stderr)
        return result["exit"]
    if "--quick" in args:
        print("record: a --quick run is a smoke run; nothing written", file=sys.stderr)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"record: wrote {out.relative_to(ROOT)} ({len(result['tables'])} tables, {result['wall_s']} s, "
          f"CPU use {result['cpu_use']:.0%} of {result['machine']['cores']} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""zsad installs under one name: from a folder holding its own ``tasks.py``, ``flows/`` and
``stores/`` (an invoke, Celery or Prefect project), the CLI and the public API import zsad's
modules, never the folder's; the wheel puts nothing but ``zsad`` at site-packages' top level."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAP = "raise ImportError('the project folder\\'s own {name} was imported instead of zsad\\'s')\n"


@pytest.fixture()
def project(tmp_path) -> Path:
    """A project folder whose own ``tasks``, ``flows`` and ``stores`` fail when imported."""
    (tmp_path / "tasks.py").write_text(TRAP.format(name="tasks.py"))
    for pkg in ("flows", "stores"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(TRAP.format(name=f"{pkg}/"))
        (tmp_path / pkg / "aggregate.py").write_text(TRAP.format(name=f"{pkg}/aggregate.py"))
    return tmp_path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(args)} failed in {cwd}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


def test_the_trap_springs(project):
    """The folder really shadows generic names (so the tests below can fail)."""
    out = subprocess.run([sys.executable, "-c", "import tasks"], cwd=project, capture_output=True, text=True)
    assert out.returncode != 0 and "project folder's own tasks.py" in out.stderr


@pytest.mark.slow  # subprocesses that import Prefect and Dask
def test_public_api_from_a_project_with_its_own_tasks_flows_and_stores(project):
    code = ("import sys\n"
            "from zsad.flows.aggregate import run_variants\n"
            "from zsad.flows.prefect_flows import precompute\n"
            "from zsad.flows.cli import main\n"
            "from zsad.tasks.plan import plan_stages\n"
            "from zsad.stores import StageStore, Unit\n"
            "import zsad.tasks.shard, zsad.tasks.aggregate\n"
            "top = sorted(m for m in sys.modules if m.split('.')[0] in ('flows', 'tasks', 'stores'))\n"
            "assert not top, top\n")
    _run([sys.executable, "-c", code], project)


@pytest.mark.slow  # four CLI processes
def test_cli_from_a_project_with_its_own_tasks_flows_and_stores(project):
    zsad = Path(sys.executable).with_name("zsad")
    assert "aggregate" in _run([str(zsad), "--help"], project).stdout
    assert "--variants" in _run([str(zsad), "aggregate", "--help"], project).stdout
    listed = _run([str(zsad), "cache", "list", "--store", str(project / "s.zarr")], project)
    assert listed.stdout.strip() == "[]"
    assert "precompute" in _run([sys.executable, "-m", "zsad", "--help"], project).stdout


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_name(tmp_path):
    """Built from a copy of the sources: only ``zsad/`` (with the report's templates and the model
    configs) and its metadata."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("zsad", "flows", "serve", "tasks", "stores"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
         src)
    (wheel,) = tmp_path.glob("zsad-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    import tomllib
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert {n.split("/")[0] for n in names} == {"zsad", f"zsad-{release}.dist-info"}, names
    for expected in ("zsad/flows/cli.py", "zsad/serve/app.py", "zsad/tasks/shard.py", "zsad/stores/keys.py",
                     "zsad/flows/templates/report.html.j2",
                     "zsad/models/configs/zsad-tiny-clip.json"):
        assert expected in names, expected
    assert not [n for n in names if "s3server" in n or "s3proxy" in n]  # test scaffolding stays in tests/


def test_no_flows_module_shadows_an_installed_or_standard_one():
    """Prefect runs ``flows/nightly.py`` with ``flows/`` first on ``sys.path``: a ``flows/requests.py``
    would be imported in place of the HTTP library by everything that needs it."""
    import importlib.util
    names = sorted(p.stem for p in (ROOT / "flows").glob("*.py") if p.stem != "__init__")
    assert "cli" in names and len(names) > 15
    shadowing = [n for n in names if n in sys.stdlib_module_names or importlib.util.find_spec(n) is not None]
    assert not shadowing, shadowing

"""The documentation cannot drift unnoticed: the README stays a front door whose links resolve,
every page is in the site's navigation, ``mkdocs build --strict`` passes (no broken link or
reference), the package metadata pins nothing exactly without a reason, and ``zsad --version``
is the metadata's version."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _local_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+://", t)]


def test_the_readme_is_a_front_door_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    missing = [t for t in _local_links(text) if not (ROOT / t).exists()]
    assert not missing, missing
    for command in ("bash scripts/setup.sh && .venv/bin/zsad demo", "bash scripts/setup.sh && .venv/bin/python -m pytest"):
        assert command in text  # the two first commands; .ci/run runs the second


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_page_is_in_the_navigation_and_every_nav_entry_exists():
    cfg = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    nav = set(_nav_pages(cfg["nav"]))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert nav == pages, (sorted(pages - nav), sorted(nav - pages))


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    out = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "methods" / "dino" / "index.html").is_file()


def test_the_metadata_pins_nothing_exactly_without_a_reason():
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    meta = tomllib.loads("\n".join(lines))["project"]
    deps = meta["dependencies"] + [d for group in meta["optional-dependencies"].values() for d in group]
    for dep in deps:
        if "==" in dep:
            line = next(line for line in lines if f'"{dep}"' in line)
            assert "#" in line.split(f'"{dep}"', 1)[1], f"{dep} is pinned exactly without a comment giving the reason"
    assert not meta["requires-python"].count("<"), "requires-python has an upper bound"


def test_the_tested_set_is_a_constraints_file_the_setup_uses():
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"(?m)^torch==\d", constraints) and re.search(r"(?m)^prefect==\d", constraints)
    assert "-c constraints.txt" in (ROOT / "scripts" / "setup.sh").read_text()


def test_version_is_the_metadata_version():
    from zsad.flows.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    import zsad
    assert zsad.__version__ == version("zsad")


def test_the_changelog_has_the_current_version():
    assert f"## [{version('zsad')}]" in (ROOT / "CHANGELOG.md").read_text()

"""The documentation cannot drift unnoticed: the README stays a front door whose links resolve,
every page is in the site's navigation, ``mkdocs build --strict`` passes (no broken link or
reference), the package metadata pins nothing exactly without a reason, and ``zsad --version``
is the metadata's version."""

from __future__ import annotations

import json
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


# --- figures rendered from results files, pictures and tables from declarations -------------------

def _load(path: Path):
    """A script loaded by its path: its folder does not join ``sys.path``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"zsad_docs_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render_docs():
    return _load(ROOT / "scripts" / "render_docs.py")


def test_every_generated_block_equals_its_results_file_or_declaration():
    rd = _render_docs()
    errors, stale = [], []
    for path in rd.pages():
        text = path.read_text()
        if rd.render_text(text, path.name, errors) != text:
            stale.append(path.name)
    assert not errors, errors
    assert not stale, f"run .venv/bin/python scripts/render_docs.py: stale blocks in {stale}"


def test_a_typed_figure_in_a_block_is_caught_and_a_bad_block_names_its_fault():
    rd = _render_docs()
    page = (ROOT / "docs" / "methods" / "sam.md").read_text()
    m = re.search(r'(<!-- figure: bench_sam row="old" col="SAM s/image" -->)([^<]*)(<!-- /figure -->)', page)
    assert m, "the SAM page cites bench_sam's old SAM s/image"
    typed = page.replace(m.group(0), m.group(1) + "99.9" + m.group(3))
    errors = []
    assert rd.render_text(typed, "sam.md", errors) == page and not errors  # re-rendered from the file
    for block, fault in [('<!-- figure: bench_sam row="nope" col="SAM s/image" -->1<!-- /figure -->', "matches 0 rows"),
                         ('<!-- figure: bench_sam row="old" col="nope" -->1<!-- /figure -->', "no column 'nope'"),
                         ("<!-- figures: bench_nothing -->\n<!-- /figures -->", "record.py bench_nothing.py"),
                         ("<!-- generated: nothing -->\n<!-- /generated -->", "no generator 'nothing'"),
                         ("<!-- figures: bench_sam colour=red -->\n<!-- /figures -->", "options are")]:
        errors = []
        assert rd.render_text(block, "x.md", errors) == block
        assert len(errors) == 1 and fault in errors[0] and errors[0].startswith("x.md: "), errors


MEASURED = re.compile(r"\**~?\d[\d.,]*\s?(s|ms|MB|GB|min|h|x|%|s/image|images/s)\**")


def test_no_measured_figure_is_typed_in_a_table_outside_a_generated_block():
    rd = _render_docs()
    for path in rd.pages():
        text = rd.BLOCK.sub("", path.read_text())
        cells = [c.strip() for line in text.splitlines() if line.startswith("|") for c in line.strip("|").split("|")]
        typed = [c for c in cells if MEASURED.fullmatch(c)]
        assert not typed, f"{path.relative_to(ROOT)}: measured figures typed by hand: {typed[:5]}; render them " \
                          "from a results file (docs/performance.md says how)"


def test_the_recorder_and_the_renderer_parse_and_write_tables_as_printed():
    import doctest
    rd = _render_docs()
    record = _load(ROOT / "benchmarks" / "record.py")
    for module in (record, rd, rd.generated()):
        assert doctest.testmod(module).failed == 0
    out = "x\n| a | b |\n|---|--:|\n| 1 | 2.5 |\n"
    rec = record.transcribed("bench_x", text=out, command="c", note="n", date="d", revision="r")
    assert rec["tables"] == [{"header": ["a", "b"], "rows": [["1", "2.5"]]}]
    assert rd.generated().markdown_table(rec["tables"][0]["header"], rec["tables"][0]["rows"]) in \
        out.replace("--:", "---")


def test_every_results_file_says_how_it_was_made_and_is_shown_somewhere():
    rd = _render_docs()
    used = {m.group(2).split()[0] for p in rd.pages() for m in rd.BLOCK.finditer(p.read_text())
            if m.group(1) != "generated"}
    files = sorted((ROOT / "benchmarks" / "recorded").glob("*.json"))
    assert files
    for path in files:
        res = json.loads(path.read_text())
        assert res["benchmark"] == path.stem and res["tables"] or res.get("stdout"), path.name
        assert res["source"] in ("recorded", "transcribed") and res["command"] and res["date"] and res["revision"]
        script = res["command"].split()[1]
        assert (ROOT / script).is_file(), f"{path.name}: {script} does not exist"
        if res["source"] == "transcribed":
            assert len(res["note"]) > 20, f"{path.name}: a transcribed file says where it came from"
        else:
            assert {"cores", "cpu", "python"} <= set(res["machine"]) and res["exit"] == 0
        assert path.stem in used, f"{path.name} is rendered nowhere"

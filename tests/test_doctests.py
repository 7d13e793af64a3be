"""Every module's examples (doctests), imported under its installed name.

The folders ``flows/``, ``tasks/`` and ``stores/`` install as ``zsad.flows``, ``zsad.tasks`` and
``zsad.stores``; pytest's own ``--doctest-modules`` would import them from the checkout as
top-level ``flows``, ``tasks`` and ``stores`` (second copies of every module), so the examples
run here instead, one test per module that has any.
"""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"zsad": "zsad", "flows": "zsad.flows", "tasks": "zsad.tasks", "stores": "zsad.stores"}


def module_name(path: Path) -> str:
    """``flows/cache.py`` -> ``zsad.flows.cache``; ``zsad/models/sam.py`` -> ``zsad.models.sam``."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    return ".".join(p for p in parts if p != "__init__")


def with_examples() -> list[str]:
    return sorted(module_name(p) for folder in PACKAGES for p in (ROOT / folder).rglob("*.py")
                  if ">>>" in p.read_text(encoding="utf-8"))


def test_the_examples_are_found():
    names = with_examples()
    assert "zsad.flows.commands" in names and "zsad.stores.keys" in names and "zsad.scoring" in names
    assert not [n for n in names if n.split(".")[0] != "zsad"]


@pytest.mark.parametrize("name", with_examples())
def test_examples(name):
    module = importlib.import_module(name)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name}: a '>>>' in the file, but no example was found in its docstrings"
    assert result.failed == 0, out.getvalue()

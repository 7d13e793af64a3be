"""The house rules, checked: detectors are compared by their declaration only (no mode name in a
comparison outside ``zsad/detectors.py``), no file-level import cycle (function-level and
``TYPE_CHECKING`` imports included), the import direction, the service imports no Prefect,
modules under ~300 lines, functions under 60 lines and 8 parameters outside the core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from zsad.detectors import MODES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"zsad": "zsad", "flows": "zsad.flows", "serve": "zsad.serve", "tasks": "zsad.tasks",
            "stores": "zsad.stores"}
REGISTRY = {"zsad/detectors.py", "zsad/variants.py", "zsad/variant_fields.py"}
MODULE_LINES = 300
FUNCTION_LINES, FUNCTION_PARAMS = 60, 8
SIZE_RULED = ("flows", "serve", "tasks", "stores")


def modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((pkg, *rel)).removesuffix(".__init__")
            out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The zsad modules ``name`` imports anywhere in its file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            mod = (base + ("." + node.module if node.module else "")) if node.level else (node.module or "")
            for a in node.names:
                full = f"{mod}.{a.name}"
                out |= {full} if full in known else ({mod} if mod in known else set())
    return out - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_file_level_import_cycle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_core_imports_none_of_the_layers_above_it():
    known = modules()
    for name, path in known.items():
        if name == "zsad.__main__" or name.split(".")[1:2] and name.split(".")[1] in ("flows", "serve", "tasks",
                                                                                       "stores"):
            continue  # ``python -m zsad`` is the command line
        above = {m for m in imports(name, path, known) if m.split(".")[1:2] and m.split(".")[1] in
                 ("flows", "serve", "tasks", "stores")}
        assert not above, f"{name} imports {sorted(above)}: the core stays below tasks, stores, flows and serve"


def test_a_mode_name_is_compared_only_in_the_detector_registry():
    """Nothing outside ``zsad/detectors.py`` (and the variant classes it declares) compares a
    string with a mode name: ``x == "musc"``, ``x in ("mutual", ...)``, ``.mode != ...``."""
    bad = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in REGISTRY:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Compare):
                    continue
                sides = [node.left, *node.comparators]
                consts = [c.value for s in sides for c in ([s] if isinstance(s, ast.Constant) else
                          getattr(s, "elts", [])) if isinstance(c, ast.Constant)]
                if set(consts) & set(MODES):
                    bad.append(f"{rel}:{node.lineno}")
    assert not bad, f"compare the detector's declaration (zsad.detectors), not its name: {bad}"


def test_the_mode_comparison_check_can_fail():
    tree = ast.parse('if agg.mode == "mutual": pass\nif x in ("musc", "a"): pass\nif im.mode == "RGB": pass')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    flagged = [any(isinstance(c, ast.Constant) and c.value in MODES for s in [n.left, *n.comparators]
                   for c in ([s] if isinstance(s, ast.Constant) else getattr(s, "elts", []))) for n in compares]
    assert flagged == [True, True, False]


def test_flows_holds_the_flows_the_cli_and_the_commands_and_only_its_flow_modules_import_prefect():
    prefect_modules = {"prefect_flows", "nightly"}
    for path in sorted((ROOT / "flows").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names} | \
            {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
        if "prefect" in top:
            assert path.stem in prefect_modules, f"flows/{path.name} imports Prefect at module level"


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("zsad.serve")))
def test_every_service_module_loads_without_prefect(module):
    code = f"import sys, {module}; assert 'prefect' not in sys.modules, 'prefect loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_modules_stay_small():
    big = {p.relative_to(ROOT).as_posix(): n for p in modules().values()
           if (n := p.read_text().count("\n")) > MODULE_LINES}
    assert not big, f"modules over {MODULE_LINES} lines: {big}"


def test_functions_stay_small_outside_the_core():
    bad = []
    for folder in SIZE_RULED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [p for p in (a.vararg, a.kwarg) if p]
                params = [p for p in params if p.arg not in ("self", "cls")]
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES or len(params) > FUNCTION_PARAMS:
                    bad.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines, {len(params)} parameters)")
    assert not bad, bad

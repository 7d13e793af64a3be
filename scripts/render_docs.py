"""Render the documentation's generated blocks: benchmark figures from their results files, and
the pictures and tables that are read from the code's own declarations.

    .venv/bin/python scripts/render_docs.py           # rewrite the blocks in README.md and docs/
    .venv/bin/python scripts/render_docs.py --check   # exit 1 naming every block that differs

A block is an HTML comment pair (invisible on GitHub and in the site) around generated text::

    <!-- figures: bench_dino -->                      every table of benchmarks/recorded/bench_dino.json
    <!-- figures: bench_dino table=2 rows="^AnomalyDINO" -->   its 2nd table, rows whose first cell matches
    ...
    <!-- /figures -->

    <!-- figure: bench_dino row="DINOv2-L" col="value" -->3.88 ...<!-- /figure -->   one cell, inline

    <!-- generated: stages -->  ...  <!-- /generated -->   (layers, stages, detectors, commands, published:
                                                           docs_generated.GENERATORS)

A table's provenance (script, command, date, revision, machine, CPU use) is printed under it.
A figure is only ever what a benchmark printed (``benchmarks/record.py`` keeps it): a number in
a block cannot contradict its results file, and ``tests/test_docs.py`` runs ``--check``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "recorded"
BLOCK = re.compile(r"<!-- (figures|figure|generated): (.*?) -->(.*?)<!-- /\1 -->", re.S)
OPTIONS = {"figures": {"table", "rows", "lines"}, "figure": {"table", "row", "col"}, "generated": set()}


class BlockError(ValueError):
    """A block names a results file, table, row or column that does not exist."""


def results(name: str) -> dict:
    """The results file ``benchmarks/recorded/<name>.json``."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise BlockError(f"no results file {path.relative_to(ROOT)}; record it with "
                         f".venv/bin/python benchmarks/record.py {name.split('-')[0]}.py [options]")
    return json.loads(path.read_text())


def provenance(res: dict) -> str:
    """One italic line: how, when, where and at which revision the figures were obtained."""
    if res.get("source") == "transcribed":
        return (f"*Transcribed (printed by `{res['command']}` on {res['date']} at revision `{res['revision']}`; "
                f"not re-recorded since): {res['note']} · `benchmarks/recorded/{res['benchmark']}.json`*")
    m = res["machine"]
    where = f"{m['cores']} cores ({m['cpu']})" + (f", torch {m['torch']}" if "torch" in m else "")
    dirty = " with uncommitted changes" if res.get("uncommitted_changes") else ""
    return (f"*`{res['command']}` · {res['date']} · revision `{res['revision']}`{dirty} · {where} · "
            f"CPU use {res['cpu_use']:.0%} · `benchmarks/recorded/{res['benchmark']}.json`*")


@functools.cache
def generated():
    """``scripts/docs_generated.py``, loaded by its path (nothing is added to ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("zsad_docs_generated", Path(__file__).with_name("docs_generated.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(res: dict, number: str | None) -> dict:
    tables = res["tables"]
    index = int(number or 1) - 1
    if not 0 <= index < len(tables):
        raise BlockError(f"{res['benchmark']} has {len(tables)} tables, asked for table={number}")
    return tables[index]


def render_figures(name: str, *, table: str | None = None, rows: str | None = None, lines: str | None = None) -> str:
    """Tables of one results file (all, or ``table``), rows filtered by the regex ``rows``, and the provenance;
    with ``lines`` (a regex), the printed lines it matches instead, as printed."""
    res = results(name)
    if lines is not None:
        kept = [line for line in res["stdout"].splitlines() if re.search(lines, line)]
        if not kept:
            raise BlockError(f"{name}: no printed line matches lines={lines!r}")
        return "\n```text\n" + "\n".join(kept) + "\n```\n\n" + provenance(res) + "\n"
    chosen = [_table(res, table)] if table else res["tables"]
    parts = []
    for t in chosen:
        kept = [r for r in t["rows"] if rows is None or re.search(rows, r[0])]
        if not kept:
            raise BlockError(f"{name}: no row of table {table or ''} matches rows={rows!r}")
        parts.append(generated().markdown_table(t["header"], kept))
    return "\n" + "\n\n".join(parts + [provenance(res)]) + "\n"


def render_figure(name: str, *, row: str, col: str = "value", table: str | None = None) -> str:
    """One cell: the row whose first cell is ``row``, else the one row whose first cell starts with it;
    the column headed ``col``."""
    t = _table(results(name), table)
    hits = [r for r in t["rows"] if r[0] == row] or [r for r in t["rows"] if r[0].startswith(row)]
    if len(hits) != 1:
        raise BlockError(f"{name}: row={row!r} matches {len(hits)} rows of {len(t['rows'])}; make it unique")
    if col not in t["header"]:
        raise BlockError(f"{name}: no column {col!r}; columns are {t['header']}")
    return hits[0][t["header"].index(col)]


def render_block(kind: str, spec: str) -> str:
    """The text a block of ``kind`` with ``spec`` (``name key="value" ...``) holds."""
    generators = generated().GENERATORS
    words = shlex.split(spec)
    if not words:
        raise BlockError(f"<!-- {kind}: --> names nothing")
    name, options = words[0], dict(w.split("=", 1) for w in words[1:] if "=" in w)
    unknown = set(options) - OPTIONS[kind]
    if unknown or len(options) != len(words) - 1:
        raise BlockError(f"<!-- {kind}: {spec} -->: options are {sorted(OPTIONS[kind])} as key=\"value\"")
    if kind == "generated":
        if name not in generators:
            raise BlockError(f"no generator {name!r}; there are {sorted(generators)}")
        return "\n" + generators[name]().strip() + "\n"
    return render_figures(name, **options) if kind == "figures" else render_figure(name, **options)


def render_text(text: str, where: str, errors: list[str]) -> str:
    """``text`` with every block's content rendered afresh; a bad block keeps its text and adds
    its error, naming ``where``, to ``errors``."""
    def one(m: re.Match) -> str:
        try:
            body = render_block(m.group(1), m.group(2))
        except BlockError as e:
            errors.append(f"{where}: {e}")
            return m.group(0)
        return f"<!-- {m.group(1)}: {m.group(2)} -->{body}<!-- /{m.group(1)} -->"
    return BLOCK.sub(one, text)


def site_index(readme: str) -> str:
    """The site's home page: the README with its links made relative to ``docs/``.

    >>> site_index("[a](docs/guide/x.md) [b](CHANGELOG.md) `docs/`")
    '[a](guide/x.md) [b](changelog.md) `docs/`'
    """
    return re.sub(r"\]\(docs/", "](", readme).replace("](CHANGELOG.md)", "](changelog.md)")


def pages() -> list[Path]:
    """The files whose blocks are rendered: the README and every page of the site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        raise SystemExit(__doc__)
    stale, errors = [], []
    index, readme = ROOT / "docs" / "index.md", (ROOT / "README.md").read_text()
    if index.read_text() != site_index(readme):
        stale.append("docs/index.md (the README's copy)")
        if not check:
            index.write_text(site_index(readme))
    for path in pages():
        text = path.read_text()
        new = render_text(text, str(path.relative_to(ROOT)), errors)
        if new != text:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(new)
    for e in errors:
        print(f"error: {e}")
    if check and stale:
        print("generated blocks out of date (run .venv/bin/python scripts/render_docs.py): " + ", ".join(stale))
    print(("checked: " if check else "rendered: ") + f"{len(pages())} files, {len(stale)} "
          f"{'stale' if check else 'changed'}, {len(errors)} blocks in error")
    return 1 if errors or (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

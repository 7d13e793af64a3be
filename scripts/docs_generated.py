"""Documentation generated from the code's declarations (``scripts/render_docs.py`` calls these):
the stage graph from ``zsad.stages.STAGES``, the detector table from ``zsad.detectors.DETECTORS``,
the command table from ``zsad.flows.commands.COMMANDS``. Change a declaration and the rendered
page changes with it; ``--check`` in the suite fails until the page is re-rendered."""

from __future__ import annotations

from collections.abc import Callable


def stages() -> str:
    """A Mermaid flowchart of the stages: each stage one node (version, per image or class, opt-in
    switch), an arrow from each input; precompute stages in one box, derived and record stages in others."""
    from zsad.stages import STAGES
    groups = {"precompute": "precompute (models; zsad precompute)", "derived": "derived (from the store only)",
              "record": "records"}
    lines = ["```mermaid", "flowchart LR"]
    for kind, title in groups.items():
        lines.append(f'  subgraph {kind}["{title}"]')
        for s in (s for s in STAGES if s.kind == kind):
            extra = ", per class" if s.per == "class" else ""
            extra += f", --{s.opt_in}" if s.opt_in and kind == "precompute" else ""
            lines.append(f'    {s.name}["{s.name} v{s.version}{extra}"]')
        lines.append("  end")
    lines += [f"  {i} --> {s.name}" for s in STAGES for i in s.inputs]
    return "\n".join(lines + ["```"])


LAYERS = {"flows": "flows/ (commands, Prefect flows, CLI)", "serve": "serve/ (the line service)",
          "tasks": "tasks/ (thin stage tasks)", "stores": "stores/ (the Zarr store)", "core": "zsad/ (the core)"}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "zsad":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def layers() -> str:
    """A Mermaid graph of the imports between the layers, read from the source (``ast``): an arrow
    from each layer to each layer its modules import, labelled with how many modules do."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    edges: dict[tuple[str, str], int] = {}
    for layer in LAYERS:
        folder = root / ("zsad" if layer == "core" else layer)
        files = [f for f in folder.rglob("*.py") if layer != "core" or f.parent == folder or
                 f.relative_to(folder).parts[0] not in LAYERS]
        for f in files:
            targets = set()
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets.add(_layer_of(node.module))
                elif isinstance(node, ast.Import):
                    targets |= {_layer_of(a.name) for a in node.names}
            for t in targets - {None, layer}:
                edges[(layer, t)] = edges.get((layer, t), 0) + 1
    lines = ["```mermaid", "flowchart TD"] + [f'  {k}["{v}"]' for k, v in LAYERS.items()]
    lines += [f"  {a} -->|{n}| {b}" for (a, b), n in sorted(edges.items())]
    return "\n".join(lines + ["```"])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with a plain ``|---|`` rule.

    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def detectors() -> str:
    """One row per detector: its fields class, scoring kind, the stages its default variant reads,
    whether it scores images together or against a batch, references, opt-in stage, unit attributes
    and where its published rows come from."""
    from zsad.detectors import DETECTORS
    rows = []
    for d in DETECTORS:
        fields = d.fields() if d.fields is not None else None
        rows.append([f"`{d.name}`", f"`{d.fields.__name__}`" if d.fields else "`AggregateConfig`'s", f"`{d.scoring}`",
                     ", ".join(d.reads(fields)), _yes(d.together), _yes(d.against_batch), _yes(d.takes_reference),
                     f"`{d.opt_in}`" if d.opt_in else "-", ", ".join(d.unit_attrs), d.cite or "-"])
    return markdown_table(["detector (`mode=`)", "variant fields", "scoring", "reads (default variant)", "together",
                           "against a batch", "references", "opt-in stage", "unit attributes", "published rows"], rows)


def _flag(flag: str | tuple[str, ...]) -> str:
    first = flag[0] if isinstance(flag, tuple) else flag
    return first if first.startswith("-") else first.upper()


def commands() -> str:
    """One row per command: its request class, help, and every option it takes."""
    from zsad.flows.commands import COMMANDS
    from zsad.flows.request_fields import cli_fields
    rows = []
    for name, c in COMMANDS.items():
        flags = [_flag(f.metadata["cli"]["flag"] or f.name) for f in cli_fields(c.request)]
        rows.append([f"`zsad {name}`", c.help, f"`{c.request.__name__}`", " ".join(f"`{f}`" for f in flags) or "-"])
    return markdown_table(["command", "what it does", "request", "options"], rows)


def published() -> str:
    """The published rows ``zsad evaluate`` prints beside a run, as each detector declares them."""
    from zsad.detectors import DATA_SETS, DETECTORS
    sets = sorted(DATA_SETS, key=lambda k: DATA_SETS[k])  # MVTec AD, VisA
    rows = []
    for d in (d for d in DETECTORS if d.published):
        for cfg in dict.fromkeys(c for k in sets for c in d.published.get(k, {})):
            cells = [" / ".join(f"{v:.2f}" for v in d.published[k][cfg]) if cfg in d.published.get(k, {}) else "-"
                     for k in sets]
            rows.append([f"`{d.name}`", f"`{cfg}`", d.published_fields, *cells, d.cite])
    return markdown_table(["detector", "config", "figures", *[DATA_SETS[k] for k in sets], "source"], rows)


GENERATORS: dict[str, Callable[[], str]] = {"layers": layers, "stages": stages, "detectors": detectors, "commands": commands, "published": published}

"""Every ``zsad`` command in the README's and the documentation's shell blocks and inline code names a command
that exists and only options that command has (read from the CLI's own parser), so an example
cannot drift from the code. Blocks are not executed here (most need weights, data or a server);
the demo's commands are run by the README's first command and its tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from zsad.flows.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```(?:bash|sh|shell|console)\n(.*?)```", re.S)


def commands(text: str) -> list[str]:
    """The ``zsad ...`` invocations of a page's shell blocks (continuations joined, comments cut),
    each as the words after ``zsad`` up to the next ``&&``, ``||``, ``;``, ``|`` or redirection."""
    out = []
    for block in BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split, lexer.commenters = True, "#"
                words = list(lexer)
            except ValueError as exc:
                out.append(f"<invalid shell: {exc}> {line}")
                continue
            for i, w in enumerate(words):
                if w.split("/")[-1] == "zsad" and (i == 0 or re.fullmatch(r"[;&|()]+|[A-Z_]+=\S*", words[i - 1])):
                    rest = words[i:]
                    end = next((j for j, t in enumerate(rest) if re.fullmatch(r"[;&|<>()]+", t)), len(rest))
                    out.append(shlex.join(rest[:end]))
    return out


def _subparsers():
    parser = build_parser(None)
    action = next(a for a in parser._actions if a.dest == "command")  # argparse keeps them here
    return action.choices


INLINE = re.compile(r"(?<!`)`((?:\.venv/bin/)?zsad [^`]+)`(?!`)")


def inline_commands(text: str) -> list[str]:
    """``zsad ...`` in inline code spans outside the blocks (a prose mention such as `zsad serve`)."""
    return [" ".join(m.split()) for m in INLINE.findall(BLOCK.sub("", text))]


EXAMPLES = [(page.relative_to(ROOT).as_posix(), cmd) for page in PAGES
            for cmd in commands(page.read_text()) + inline_commands(page.read_text())]


def test_the_pages_hold_examples():
    assert len(EXAMPLES) > 40 and any(p == "README.md" for p, _ in EXAMPLES)


@pytest.mark.parametrize("page,command", EXAMPLES, ids=[f"{p}:{c[:60]}" for p, c in EXAMPLES])
def test_an_example_names_only_commands_and_options_that_exist(page, command):
    assert not command.startswith("<invalid shell"), f"{page}: {command}"
    words = shlex.split(command)
    subs = _subparsers()
    args = [w for w in words[1:]]
    if not args or args[0] in ("--help", "-h", "--version"):
        return
    assert args[0] in subs, f"{page}: `{command}`: no command {args[0]!r} (known: {sorted(subs)})"
    sub = subs[args[0]]
    known = {s for a in sub._actions for s in a.option_strings}
    nested = [a for a in sub._actions if a.choices and isinstance(a.choices, dict)]  # cache list, weights fetch ...
    if nested and len(args) > 1 and args[1] in nested[0].choices:
        known |= {s for a in nested[0].choices[args[1]]._actions for s in a.option_strings}
    unknown = [w.split("=")[0] for w in args if w.startswith("--") and w.split("=")[0] not in known]
    assert not unknown, f"{page}: `{command}`: {args[0]} has no option(s) {unknown}"

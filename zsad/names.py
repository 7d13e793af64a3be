"""The one grammar of names that reach the store or a file path: data sets, classes, splits,
image ids, stage hashes, reference folders, request ids.

A name is 1 to ``max_len`` characters from ``A-Z a-z 0-9 _ . -``, matched whole
(``re.fullmatch``: a trailing newline is a character like any other, not an end of line), and
is neither ``.`` nor ``..``. The store's keys, the service's fields, ``zsad watch`` and the
command line all check names here, so what one accepts the others accept.

Example:
    >>> check_name("pcb1", "class"), is_name("pill\\n"), is_name(".."), is_name("a" * 65, max_len=64)
    ('pcb1', False, False, False)
    >>> check_name("pill\\n", "class")
    Traceback (most recent call last):
    ...
    ValueError: class 'pill\\n' is not a valid name: 1-255 characters from letters, digits, '_', '.' and '-', not '.' or '..'
"""

from __future__ import annotations

import re

NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
STORE_NAME_MAX = 255  # a store component is a file or folder name (255 bytes on common file systems)
TYPED_NAME_MAX = 64  # names a client types: class, data set, reference folder, request id


def rule(max_len: int = STORE_NAME_MAX) -> str:
    """The grammar in words (what an error message says)."""
    return f"1-{max_len} characters from letters, digits, '_', '.' and '-', not '.' or '..'"


def is_name(value: object, *, max_len: int = STORE_NAME_MAX) -> bool:
    """True if ``value`` is a string of the grammar (see the module)."""
    return (isinstance(value, str) and 0 < len(value) <= max_len and NAME_CHARS.fullmatch(value) is not None
            and value not in (".", ".."))


def check_name(value: object, what: str, *, max_len: int = STORE_NAME_MAX) -> str:
    """``value`` if it is a name, else a ``ValueError`` naming ``what``, the value and the rule."""
    if not is_name(value, max_len=max_len):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "..."
        raise ValueError(f"{what} {shown} is not a valid name: {rule(max_len)}")
    return value  # type: ignore[return-value]

"""The one ``scores.csv`` schema and writer of ``zsad predict``, ``zsad serve`` and ``zsad watch``.

Columns: ``SCORES_FIELDS`` (a command leaves empty what it does not know: ``predict`` has no
request id, the service no heatmap file). Text cells that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are written with a
leading ``'``, as OWASP advises against CSV injection; numbers are written as they are.

Example:
    >>> safe_cell("=HYPERLINK(\\"http://x\\")"), safe_cell(-0.5), safe_cell("cam1.png"), safe_cell(None)
    ('\\'=HYPERLINK("http://x")', -0.5, 'cam1.png', '')
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Mapping

SCORES_FIELDS = ("time", "request_id", "source", "path", "sha256", "class", "status", "sample_score", "decision",
                 "threshold", "pixel_threshold", "threshold_source", "heatmap", "variant", "variant_hash", "stage",
                 "error")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: None as empty, formula-like text escaped with a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]], *, append: bool = False) -> Path:
    """Write (or append) ``rows`` to the ``scores.csv`` at ``path``, the header first in a new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not append or not path.exists() or path.stat().st_size == 0
    with open(path, "a" if append else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SCORES_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows({k: safe_cell(r.get(k)) for k in SCORES_FIELDS} for r in rows)
    return path

"""The Jinja2 environment of zsad's HTML (``flows/templates``): the report's pages and the line
service's review page, which extends the report's base template."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2


def missing(v: Any) -> bool:
    """A metric that is not there: None or NaN."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "-" if missing(v) else f"{100 * v:.1f}"
    env.filters["sortkey"] = lambda v: -1 if missing(v) else f"{v:.6f}"  # missing values sort last
    return env

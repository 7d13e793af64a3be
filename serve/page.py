"""The review page of ``zsad serve``, rendered on the server with the report's Jinja2 templates
(``templates/serve.html.j2`` extends the report's ``base.html.j2``); its little JavaScript
uploads through ``/v1/predict`` and polls ``/v1/decisions``."""

from __future__ import annotations

from .inspector import Inspector
from .inline_requests import ServeRequest
from zsad.flows.templates import template_env


def render_page(r: ServeRequest, inspector: Inspector, *, nonce: str = "") -> str:
    """The review page; ``nonce`` lets its inline script and style run under the page's CSP."""
    nav = [("review", "/"), ("API docs", "/docs"), ("metrics", "/metrics")] + ([("report", "/report/")]
                                                                               if r.report_dir else [])
    return template_env().get_template("serve.html.j2").render(
        title="zsad — inline inspection", nav=nav, nonce=nonce, config=r.config, variant=r.variant, store=r.store, name=r.name,
        threshold=r.threshold, report=bool(r.report_dir), default_class=r.classes[0] if r.classes else "")

"""``zsad serve``: the warm service (models loaded once, kept in this process) on uvicorn.

The port is bound only after the models are warm; the bound address is printed and written to
``{out}/serve.json`` (``--port 0`` takes any free port). SIGTERM or Ctrl-C stop accepting
connections, finish the requests in flight and those queued, then exit.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from .inspector import Inspector
from .inline_requests import ServeRequest

log = logging.getLogger("zsad.serve")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    return sock


def uvicorn_config(app, r: ServeRequest, log_level: str = "info"):
    """uvicorn's settings for the service: idle keep-alive, a deadline for request headers
    (``serve_guard.header_timeout_protocol``), at most ``max_connections`` connections and
    requests (503 beyond), 16 KiB of headers."""
    import uvicorn

    from .guard import header_timeout_protocol
    return uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                          http=header_timeout_protocol(r.header_timeout_s), timeout_keep_alive=r.keep_alive_s,
                          limit_concurrency=r.max_connections, h11_max_incomplete_event_size=16 * 1024)


def run_serve(request: ServeRequest) -> dict[str, Any]:
    """Warm the models, bind, serve until stopped; returns what was served."""
    import uvicorn

    from .app import create_app
    r = request
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    inspector = Inspector(r)
    warm_s = inspector.warm(r.classes[0] if r.classes else "object") if r.warm else 0.0
    app = create_app(r, inspector)
    sock = bind(r.host, r.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    Path(r.out).mkdir(parents=True, exist_ok=True)
    (Path(r.out) / "serve.json").write_text(json.dumps({"url": url, "pid": os.getpid(), "started": time.time(),
                                                        "warm_s": warm_s}))
    print(f"zsad serve: {url} (review page /, API /docs); models warm in {warm_s:.1f} s; "
          f"audit log {Path(r.out) / 'audit.jsonl'}", flush=True)
    server = uvicorn.Server(uvicorn_config(app, r))
    server.run(sockets=[sock])
    return {"url": url}

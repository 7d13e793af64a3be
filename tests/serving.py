"""A ``zsad serve`` app on a real uvicorn server in a thread of the test process (the models of
the session's tiny fixtures stay warm across tests), and a calibrated store to serve from."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator

from zsad.flows.cli import main
from zsad.serve.inspector import Inspector
from zsad.serve.inline_requests import ServeRequest
from zsad.serve.run import bind, uvicorn_config
from zsad.serve.app import create_app


def calibrated_store(store: str, synthetic_root: str) -> str:
    """``store`` with FPR thresholds of class pill (the seed variant) from the data set's good pills."""
    good = Path(synthetic_root) / "pill" / "test" / "good"
    assert main(["calibrate", "--good", str(good), "--class", "pill", "--store", store, "--fpr", "0.01"]) == 0
    return store


@contextlib.contextmanager
def live_server(request: ServeRequest, warm: bool = False) -> Iterator[tuple[str, Inspector]]:
    """``(url, inspector)`` of the service for ``request`` on 127.0.0.1 (any free port)."""
    import uvicorn
    inspector = Inspector(request)
    if warm:
        inspector.warm("pill")
    else:
        inspector.models_ready = True  # the session's models are loaded by the fixtures already
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(create_app(request, inspector), request, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", inspector
    finally:
        server.should_exit = True
        thread.join(30)

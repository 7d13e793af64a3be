"""An HTTP proxy in front of an S3-compatible endpoint that counts requests by method and, when
asked, misbehaves the way object storage does at scale (for tests and ``benchmarks/bench_s3.py``).

    with LocalS3() as s3, S3Proxy(s3.endpoint_url, fault_rate=0.05) as proxy:
        opts = {"endpoint_url": proxy.endpoint_url}     # zsad talks to the proxy
        ...
        proxy.counts()                                   # Counter({"PUT": 412, "GET": 180, ...})

Faults (``fault_rate`` of requests, drawn from a seeded generator): half are answered
``503 SlowDown`` before reaching the server; half reach the server and then the connection is
closed without an answer (the write happened; the client does not know). Both are what a
client must retry. Runs in a thread of this process; worker processes reach it by its URL.
"""

from __future__ import annotations

import collections
import http.client
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


class S3Proxy:
    """Counts (and optionally faults) every request to ``target_url``; ``endpoint_url`` while open.

    Attributes:
        log: ``(method, path)`` of every request answered or faulted, in order.
        faults: number of requests faulted.
    """

    def __init__(self, target_url: str, fault_rate: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= fault_rate < 1.0:
            raise ValueError(f"fault_rate must be in [0, 1), got {fault_rate}")
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.fault_rate, self._rng, self._lock = fault_rate, random.Random(seed), threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.faults = 0
        self._server: ThreadingHTTPServer | None = None

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self.fault_rate and self._rng.random() < self.fault_rate:
                self.faults += 1
                return "503" if self._rng.random() < 0.5 else "reset"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                body = _read_body(self)
                with proxy._lock:
                    proxy.log.append((self.command, self.path.split("?")[0]))
                fault = proxy._draw_fault()
                if fault == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(_SLOWDOWN)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
                    conn = getattr(local, "conn", None) or http.client.HTTPConnection(*proxy.target, timeout=60)
                    local.conn = conn
                    try:
                        conn.request(self.command, self.path, body=body or None, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        local.conn = None
                        if attempt:
                            raise
                if fault == "reset":  # the server acted; the client never hears of it
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler

    def __enter__(self) -> "S3Proxy":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "the proxy is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def counts(self) -> collections.Counter:
        """Requests by method since the start (or the last ``reset``)."""
        with self._lock:
            return collections.Counter(m for m, _ in self.log)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()

"""What keeps ``zsad serve`` safe on a line before a request reaches a route: the Host
allow-list (DNS rebinding), cross-site posts refused (Origin, Sec-Fetch-Site), the security
headers of every answer, and a uvicorn protocol that closes connections whose request headers
do not arrive in time (slowloris).

Example:
    >>> allowed = allowed_hosts("127.0.0.1", ("line-3.local",), token=None)
    >>> [host_allowed(h, allowed) for h in ("127.0.0.1:8000", "localhost", "[::1]:80", "line-3.local:8000",
    ...                                     "evil.example:8000", "")]
    [True, True, True, True, False, False]
    >>> cross_site("POST", {"origin": "http://evil.example", "host": "127.0.0.1:8000"})
    "origin 'http://evil.example' is not this server (127.0.0.1:8000)"
    >>> cross_site("POST", {"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000",
    ...                     "sec-fetch-site": "same-origin"}) is None
    True
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Mapping
from urllib.parse import urlsplit

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from zsad.flows.request_fields import is_loopback

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY_HOST = "*"
PAGE_CSP = ("default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
            "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'")
REPORT_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def _hostname(host_header: str) -> str:
    """The host of a ``Host`` header without its port (``[::1]:80`` -> ``::1``), lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(bind_host: str, extra: tuple[str, ...], token: str | None) -> frozenset[str]:
    """The ``Host`` names this server answers: loopback names, the bound address (unless it is
    a wildcard such as 0.0.0.0) and ``--allowed-host`` values. A wildcard bind with a token
    answers any host (the token is the guard there): the set is ``{"*"}`` then."""
    names = set(LOOPBACK_NAMES) | {h.strip().strip("[]").lower() for h in extra}
    try:
        wildcard = ipaddress.ip_address(bind_host).is_unspecified
    except ValueError:
        wildcard = False
    if wildcard and token:
        return frozenset({ANY_HOST})
    if not wildcard:
        names.add(bind_host.strip("[]").lower())
    return frozenset(names)


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """True if the request's ``Host`` names this server (see ``allowed_hosts``)."""
    if ANY_HOST in allowed:
        return True
    name = _hostname(host_header)
    return bool(name) and (name in allowed or is_loopback(name))


def cross_site(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a state-changing request comes from another site (a page the operator has open), or
    None. Browsers send ``Sec-Fetch-Site`` and ``Origin`` with such requests; a client that
    sends neither (curl, a camera's script) is not a browser and is not refused here."""
    if method.upper() in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site", "")
    if site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site is {site!r}: requests from other sites are refused"
    origin = headers.get("origin")
    if origin is None:
        return None
    parts = urlsplit(origin)
    if origin == "null" or not parts.netloc or parts.netloc.lower() != headers.get("host", "").lower():
        return f"origin {origin!r} is not this server ({headers.get('host', '')})"
    return None


def security_headers(path: str, nonce: str) -> dict[str, str]:
    """The headers every answer carries; the CSP by what is served at ``path``."""
    if path == "/":
        csp = PAGE_CSP.format(nonce=nonce)
    elif path.startswith("/report"):
        csp = REPORT_CSP
    elif path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        csp = DOCS_CSP
    else:
        csp = API_CSP
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cross-Origin-Resource-Policy": "same-origin"}


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose next request's headers are not complete
    ``seconds`` after it opened or after its last answer (half-open and slowly-dribbled headers:
    slowloris). uvicorn's keep-alive timeout alone starts only after a first answer."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

    return HeaderTimeoutProtocol

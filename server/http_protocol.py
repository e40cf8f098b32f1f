"""uvicorn's HTTP protocol (httptools) with a deadline on a request's headers.

uvicorn 0.54 has no such timeout: ``timeout_keep_alive`` runs only between requests, after a response,
so a connection that sends half a request line or header block and then nothing is held open for
ever (500 such connections were all still open after 60 s, issue 17: a slowloris). Here a timer starts
when the connection opens and whenever a new request begins, and stops when the request's headers are
complete (for a WebSocket upgrade, just before the handshake is answered); when it fires first, the
connection is closed without an answer. ``TOT_HTTP_HEADER_TIMEOUT`` (default 10 s) sets it. nginx in front
has its own ``client_header_timeout`` (deploy/nginx/nginx.conf); this one also covers a server reached
directly.

Relies on ``HttpToolsProtocol``'s ``connection_made``, ``on_message_begin``, ``on_headers_complete``,
``connection_lost`` and ``transport`` (uvicorn is pinned below its next minor release in pyproject.toml);
``tests/e2e/test_abuse.py::test_a_connection_that_never_finishes_its_headers_is_closed`` fails if the
deadline stops working.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("tot.http")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request headers take over
    :attr:`header_timeout_s` seconds."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            client = self.client[0] if self.client else None
            log.info("request headers timed out; connection closed", extra={"client": client})
            self.transport.close()


def header_timeout_protocol(timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """:class:`HeaderTimeoutProtocol` with a ``timeout_s`` deadline (seconds), as uvicorn's ``http``."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": timeout_s})

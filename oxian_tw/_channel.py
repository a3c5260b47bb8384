# -*- test-case-name: tests.test_site -*-
"""
The HTTP/1.1 channel of an `oxian_tw._site.OxianSite`: Twisted's
``HTTPChannel``, writing each response head as one piece, asking the
transport for its addresses once, and answering a malformed request (a bad
request line, header name or value, framing) with the JSON 400 error and
its request id, like every other 400.

Twisted answers those with a bare ``400 Bad Request`` from
``HTTPChannel._respondToBadRequestAndDisconnect``, which it does not make
public. The one use here is checked at import (`BAD_REQUEST_HOOK`); without
it, Twisted's own answer stands and nothing else changes.
``tests/test_site.py`` runs both ways.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from ._errors import closing_response
from ._requestid import new_request_id

__all__ = ("BAD_REQUEST_HOOK", "OxianChannel")

#: Whether Twisted's channel still answers malformed requests through the
#: method overridden here.
BAD_REQUEST_HOOK: bool = callable(
    getattr(HTTPChannel, "_respondToBadRequestAndDisconnect", None)
)

_log = Logger(namespace="oxian_tw.channel")


class OxianChannel(HTTPChannel):
    """
    An HTTP/1.1 connection's protocol in an `OxianSite` (see the module
    docstring).
    """

    #: The `oxian_tw._connection.OxianConnection` this channel serves
    #: (its phases and deadlines); set by it.
    connection: Any = None
    #: The connection's two ends, asked for by every request.
    _host: Any = None
    _peer: Any = None

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        if not isinstance(headers, Headers):
            # Pairs: Twisted's own path sanitizes them into ``Headers``.
            super().writeHeaders(version, code, reason, headers)  # type: ignore[no-untyped-call]
            return
        # Twisted hands the head's 20-odd pieces to ``writeSequence``, which
        # checks and counts each; one joined piece is one check.
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        transport: Any = self.transport
        transport.write(b"".join(head))

    def getHost(self) -> Any:
        host = self._host
        if host is None:
            # A system call each time (``getsockname``); it never changes.
            transport: Any = self.transport
            host = self._host = transport.getHost()
        return host

    def getPeer(self) -> Any:
        peer = self._peer
        if peer is None:
            transport: Any = self.transport
            peer = self._peer = transport.getPeer()
        return peer

    def answer_bad_request(self) -> None:
        """
        Answer a malformed request with the JSON 400 error and its request
        id, and close: nothing more is read.
        """
        request_id = new_request_id()
        _log.info(
            "400: malformed request from {peer}; connection closed "
            "(request {request_id})",
            peer=getattr(self.getPeer(), "host", "-"),
            request_id=request_id,
        )
        transport: Any = self.transport
        transport.write(
            closing_response(400, "Malformed request", {"X-Request-Id": request_id})
        )
        connection = self.connection
        if connection is not None:
            connection.closing()
        self.loseConnection()  # type: ignore[no-untyped-call]


if BAD_REQUEST_HOOK:

    def _respond_to_bad_request(self: OxianChannel) -> None:
        self.answer_bad_request()

    OxianChannel._respondToBadRequestAndDisconnect = _respond_to_bad_request  # type: ignore[method-assign,assignment]

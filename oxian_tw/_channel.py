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
    #: While true, a response head waits to leave with the first bytes of
    #: its body (`OxianRequest.write`): one send for both.
    holding_head = False
    _held_head: bytes | None = None

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
        if self.holding_head:
            self._held_head = b"".join(head)
            return
        self._send([b"".join(head)])

    def release_head(self) -> None:
        """Send the response head held back, if it is still held."""
        head = self._held_head
        if head is not None:
            self._held_head = None
            self._send([head])

    def write(self, data: bytes) -> None:
        head = self._held_head
        if head is not None:
            self._held_head = None
            self._send([head, data])
        else:
            self._send([data])

    def writeSequence(self, iovec: Any) -> None:
        parts = list(iovec)
        head = self._held_head
        if head is not None:
            self._held_head = None
            parts.insert(0, head)
        self._send(parts)

    def _send(self, parts: list[bytes]) -> None:
        # Through the transport, sent when the reactor next finds the socket
        # writable. Sending at once (`oxian_tw._fastpath.DirectWriter`) was
        # measured slower for plain responses: 54.9 against 47.8 us of
        # server CPU a request, 0.87x the rate (bench/plain_get.py, wrk
        # -t2 -c50, 6 rounds), each send waking the client mid-turn.
        transport: Any = self.transport
        if len(parts) == 1:
            transport.write(parts[0])
        else:
            transport.write(b"".join(parts))

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

    def answer_bad_request(
        self, status: int = 400, message: str = "Malformed request"
    ) -> None:
        """
        Answer a malformed request with the JSON error (400 unless said
        otherwise) and its request id, and close: nothing more is read.
        """
        request_id = new_request_id()
        _log.info(
            "{status}: {what} from {peer}; connection closed (request {request_id})",
            status=status,
            what=message.lower(),
            peer=getattr(self.getPeer(), "host", "-"),
            request_id=request_id,
        )
        transport: Any = self.transport
        transport.write(closing_response(status, message, {"X-Request-Id": request_id}))
        connection = self.connection
        if connection is not None:
            connection.closing()
        self.loseConnection()  # type: ignore[no-untyped-call]


if BAD_REQUEST_HOOK:

    def _respond_to_bad_request(self: OxianChannel) -> None:
        self.answer_bad_request()

    OxianChannel._respondToBadRequestAndDisconnect = _respond_to_bad_request  # type: ignore[method-assign,assignment]

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

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from ._errors import closing_response
from ._fastpath import DirectWriter
from ._requestid import new_request_id

__all__ = ("BAD_REQUEST_HOOK", "OxianChannel")

#: Whether Twisted's channel still answers malformed requests through the
#: method overridden here.
BAD_REQUEST_HOOK: bool = callable(
    getattr(HTTPChannel, "_respondToBadRequestAndDisconnect", None)
)

_log = Logger(namespace="oxian_tw.channel")


def _head(version: bytes, code: bytes, reason: bytes, headers: Headers) -> bytes:
    """A response head, as one piece."""
    # Twisted hands the head's 20-odd pieces to ``writeSequence``, which
    # checks and counts each; one joined piece is one check.
    head = [version, b" ", code, b" ", reason, b"\r\n"]
    for name, values in headers.getAllRawHeaders():
        for value in values:
            head += (name, b": ", value, b"\r\n")
    head.append(b"\r\n")
    return b"".join(head)


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
    #: Direct socket writes (`DirectWriter`); ``False``: not asked yet.
    _direct: DirectWriter | None | bool = False
    #: What this turn wrote, sent when the turn ends (`_turn_ended`).
    _pending: list[bytes] | None = None

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        if not isinstance(headers, Headers):
            # Pairs: Twisted's own path sanitizes them into ``Headers``.
            super().writeHeaders(version, code, reason, headers)  # type: ignore[no-untyped-call]
            return
        head = _head(version, code, reason, headers)
        if self.holding_head:
            self._held_head = head
            return
        self._send([head])

    def write_response(
        self, version: bytes, code: bytes, reason: bytes, headers: Headers, body: bytes
    ) -> None:
        """
        Write a whole response, its head and then ``body`` (its framing
        already in ``headers``), as a response's first write: in one piece.
        """
        self._send_first([_head(version, code, reason, headers), body])

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
        if self.holding_head or self._pending is not None:
            self._send_first(parts)
            return
        # Not a response's first write (a stream's head, its events, an
        # answer written piece by piece), nothing waiting: as Twisted
        # writes. (Streams send their events themselves, at the turn's end.)
        transport: Any = self.transport
        transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def _send_first(self, parts: list[bytes]) -> None:
        """
        Send a response's first write (its head and first bytes), or what
        follows it in the turn (after what waits).
        """
        pending = self._pending
        if pending is not None:
            pending += parts
            return
        transport: Any = self.transport
        direct = self._direct
        if direct is False:
            direct = self._direct = DirectWriter.for_transport(transport)
        if direct is None:
            # TLS, a UNIX socket, a test's transport: as Twisted writes.
            transport.write(parts[0] if len(parts) == 1 else b"".join(parts))
            return
        # Plain TCP: the turn's writes leave together when the turn ends,
        # straight to the socket (the site's end of the turn, the streams'
        # own: `oxian_tw._producer.Flusher`). Sending them at once instead
        # was slower: 54.9 against 47.8 us of server CPU a plain request,
        # each send waking the client in the middle of the turn; at the
        # turn's end, 42.4 against 53.9 us (bench/plain_get.py, issue 33).
        self._pending = list(parts)
        site: Any = getattr(self, "site", None)
        site.turn_end.add(self)

    def _turn_ended(self, now: float) -> None:
        """The reactor turn in which this connection wrote is ending."""
        self.flush_pending()

    def flush_pending(self) -> None:
        """Send what this turn wrote now (before any other write or a close)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        direct: Any = self._direct
        if not direct.send(pending):
            transport: Any = self.transport
            transport.write(b"".join(pending))

    def pending_size(self) -> int:
        """Bytes written this turn that wait for its end."""
        return sum(map(len, self._pending or ()))

    def take_pending(self) -> list[bytes] | None:
        """What this turn wrote, to be sent by the caller before its own."""
        pending = self._pending
        if pending is not None:
            # (Only then: one more attribute on every open stream's channel
            # costs it the dict CPython shares between instances.)
            self._pending = None
        return pending

    def loseConnection(self) -> None:
        self.flush_pending()
        super().loseConnection()  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:
        # Twisted's parser may answer "100 Continue" here, straight to the
        # transport: what this turn wrote goes first.
        if self._pending is not None and self.requests[-1].requestHeaders.hasHeader(
            b"expect"
        ):
            self.flush_pending()
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._pending = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

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
        self.flush_pending()
        transport: Any = self.transport
        transport.write(closing_response(status, message, {"X-Request-Id": request_id}))
        connection = self.connection
        if connection is not None:
            connection.closing()
        self.loseConnection()


if BAD_REQUEST_HOOK:

    def _respond_to_bad_request(self: OxianChannel) -> None:
        self.answer_bad_request()

    OxianChannel._respondToBadRequestAndDisconnect = _respond_to_bad_request  # type: ignore[method-assign,assignment]

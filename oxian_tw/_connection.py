# -*- test-case-name: tests.test_connection -*-
"""
One client connection of an `oxian_tw._site.OxianSite`: what bounds it.

A connection passes through phases (`Phase`, with its transitions in
`TRANSITIONS`, the one place they are declared). Every phase in which the
connection waits for its client has a deadline (SPEC §12.1), all of them on
the site's one timer (`oxian_tw._deadlines.Deadlines`): the TLS handshake,
the first byte of the first request, a request head, keep-alive between
requests, an HTTP/2 connection without a stream, an HTTP/2 header block,
and a closing connection's last writes. A request being handled, a
response being sent and an open stream have none here: their own rules
apply (the body timeout, the write deadline, heartbeats; SPEC §5.3).

The HTTP/1.1 parser (Twisted's ``HTTPChannel`` today) moves a connection
on with three calls (`OxianConnection.head_complete`,
`OxianConnection.response_done`, `OxianConnection.closing`); the HTTP/2
connection reports its streams and header blocks (`oxian_tw._h2.H2Watcher`).
Another parser can drive the same phases with the same calls.

At ``--max-connections`` the site evicts the connection that has waited
longest in a `WAITING` phase (`OxianSite.buildProtocol`), so idle or slow
clients cannot hold the cap.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IProtocol, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._config import (
    BODY_TIMEOUT,
    FIRST_BYTE_TIMEOUT,
    H2_IDLE_TIMEOUT,
    HEADER_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    TLS_HANDSHAKE_TIMEOUT,
)
from ._deadlines import Deadlines
from ._errors import closing_response
from ._fastpath import unsent_bytes
from ._h2 import H2, H2_PREFACE, NO_ERROR, PROTOCOL_ERROR, switch_to_h2
from ._requestid import new_request_id

if TYPE_CHECKING:
    from ._site import OxianSite

__all__ = (
    "LINGER_TIMEOUT",
    "MAX_HEAD",
    "WAITING",
    "OxianConnection",
    "Phase",
    "Timeouts",
    "TRANSITIONS",
)


class Phase(enum.Enum):
    """Where a connection is; the value says it in words (for logs)."""

    HANDSHAKE = "in its TLS handshake"
    FIRST_BYTE = "waiting for its first request"
    HEAD = "sending a request head"
    BUSY = "handling a request"
    IDLE = "waiting for its next request (keep-alive)"
    H2_IDLE = "HTTP/2 without an open stream"
    H2_BUSY = "HTTP/2 with open streams"
    H2_HEADER_BLOCK = "sending an HTTP/2 header block"
    CLOSING = "closing"

    # Members are singletons compared by identity: hash them by identity
    # too, in C (Enum's own hash is a Python function, and a request looks
    # phases up ten times).
    __hash__ = object.__hash__


_P = Phase

#: Where each phase may go next. Any phase may end in `Phase.CLOSING`.
TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    _P.HANDSHAKE: frozenset({_P.FIRST_BYTE, _P.CLOSING}),
    _P.FIRST_BYTE: frozenset({_P.HEAD, _P.H2_IDLE, _P.CLOSING}),
    _P.HEAD: frozenset({_P.BUSY, _P.H2_IDLE, _P.CLOSING}),
    _P.BUSY: frozenset({_P.IDLE, _P.CLOSING}),
    _P.IDLE: frozenset({_P.HEAD, _P.BUSY, _P.CLOSING}),
    _P.H2_IDLE: frozenset({_P.H2_BUSY, _P.H2_HEADER_BLOCK, _P.CLOSING}),
    _P.H2_BUSY: frozenset({_P.H2_IDLE, _P.H2_HEADER_BLOCK, _P.CLOSING}),
    _P.H2_HEADER_BLOCK: frozenset({_P.H2_IDLE, _P.H2_BUSY, _P.CLOSING}),
    _P.CLOSING: frozenset(),
}

#: Phases in which the connection waits for its client, with no request
#: being handled and no stream open (one still sending a request head
#: waits too): these are evicted at ``--max-connections``.
WAITING: frozenset[Phase] = frozenset(
    {
        _P.HANDSHAKE,
        _P.FIRST_BYTE,
        _P.HEAD,
        _P.IDLE,
        _P.H2_IDLE,
        _P.H2_HEADER_BLOCK,
        _P.CLOSING,
    }
)

#: Seconds a closing connection may take to send what it still has (the
#: answer, a GOAWAY, a TLS close) before it is cut (nginx's
#: ``lingering_timeout`` is 5 s too).
LINGER_TIMEOUT = 5.0

#: The most bytes a request head may have (Twisted's own limit for the
#: request line and for all header bytes, ``HTTPChannel.totalHeadersSize``).
MAX_HEAD: int = 16384


@attrs.frozen
class Timeouts:
    """The seconds each deadline allows (SPEC §12.1; `oxian_tw._config`)."""

    tls_handshake: float = TLS_HANDSHAKE_TIMEOUT
    first_byte: float = FIRST_BYTE_TIMEOUT
    header: float = HEADER_TIMEOUT
    body: float = BODY_TIMEOUT
    keep_alive: float = KEEP_ALIVE_TIMEOUT
    h2_idle: float = H2_IDLE_TIMEOUT
    linger: float = LINGER_TIMEOUT

    @classmethod
    def from_settings(cls, settings: Any) -> Timeouts:
        """The timeouts of an app's `oxian_tw._config.Settings`."""
        return cls(
            tls_handshake=settings.tls_handshake_timeout,
            first_byte=settings.first_byte_timeout,
            header=settings.header_timeout,
            body=settings.body_timeout,
            keep_alive=settings.keep_alive_timeout,
            h2_idle=settings.h2_idle_timeout,
        )

    def of_phases(self) -> dict[Phase, float]:
        """The deadline of each phase that has one."""
        return {
            _P.HANDSHAKE: self.tls_handshake,
            _P.FIRST_BYTE: self.first_byte,
            _P.HEAD: self.header,
            _P.IDLE: self.keep_alive,
            _P.H2_IDLE: self.h2_idle,
            _P.H2_HEADER_BLOCK: self.header,
            _P.CLOSING: self.linger,
        }


@implementer(IProtocol, IHandshakeListener)
class OxianConnection:
    """
    One client connection: its `Phase`, its deadlines, and its protocol
    (an `oxian_tw._channel.OxianChannel`, or, once the client speaks
    HTTP/2, its HTTP/2 connection), tracked from ``makeConnection`` to
    ``connectionLost`` so that a shutdown can close it once what was
    written has left.

    It answers for the ``IProtocol`` and ``IHandshakeListener`` methods
    and its own, and passes nothing else on to its protocol: a
    ``__getattr__`` would put every attribute read of the class on
    CPython's slow path (7,000 instructions a plain request, issue 33).
    """

    __slots__ = (
        "_inner",
        "_site",
        "_deadlines",
        "transport",
        "_closed",
        "_h2",
        "_sniffed",
        "phase",
        "_head_size",
    )
    _log = Logger()

    def __init__(
        self, inner: Any, site: OxianSite, deadlines: Deadlines[Phase]
    ) -> None:
        self._inner = inner
        self._site = site
        self._deadlines = deadlines
        self.transport: Any = None
        self._closed: list[Deferred[None]] | None = None
        #: The HTTP/2 connection, once the client spoke HTTP/2.
        self._h2: Any = None
        #: Bytes read before the protocol was known (``None``: known).
        self._sniffed: bytes | None = b"" if H2 else None
        self.phase = _P.FIRST_BYTE
        #: Bytes of the request head being read.
        self._head_size = 0
        inner.connection = self

    # Phases.

    def _move(self, phase: Phase, *, timed: bool = True) -> None:
        """
        Go to ``phase`` (one `TRANSITIONS` allows); with ``timed``, its
        deadline starts. The deadline of the phase left is not cancelled
        (every request would pay for it): one that passes for a phase the
        connection is no longer in is ignored (`deadline_passed`), and
        eviction checks the phase (`OxianSite`).
        """
        old = self.phase
        if phase not in TRANSITIONS[old]:
            raise ValueError(f"a connection {old.value} cannot be {phase.value}")
        self.phase = phase
        if timed and phase in _TIMED:
            self._deadlines.start(self, phase)

    def head_complete(self) -> None:
        """An HTTP/1.1 request head has been read: its request is handled."""
        phase = self.phase
        if phase is _P.HEAD or phase is _P.IDLE:
            self._move(_P.BUSY)

    def response_done(self) -> None:
        """An HTTP/1.1 response is complete: the next request may come."""
        if self.phase is _P.BUSY:
            self._move(_P.IDLE)

    def closing(self, *, stop_reading: bool = True) -> None:
        """
        The connection is closing (an answer was written before its request
        was read, a protocol error): what it still has to send gets
        `Timeouts.linger` seconds; with ``stop_reading``, nothing more is
        read from the client.
        """
        if self.phase is _P.CLOSING:
            return
        self._move(_P.CLOSING)
        if stop_reading and self.transport is not None:
            self.transport.pauseProducing()

    def h2_state(self, streams: int, in_block: bool) -> None:
        """`oxian_tw._h2.H2Watcher`: the HTTP/2 connection's streams changed."""
        if self.phase is _P.CLOSING:
            return
        if in_block:
            phase = _P.H2_HEADER_BLOCK
        else:
            phase = _P.H2_BUSY if streams else _P.H2_IDLE
        if phase is not self.phase:
            self._move(phase)

    def h2_failed(self) -> None:
        """`oxian_tw._h2.H2Watcher`: the HTTP/2 connection ended."""
        self.closing()

    def deadline_passed(self, phase: Phase) -> None:
        """The deadline of ``phase`` passed (`oxian_tw._deadlines.Expiring`)."""
        if phase is not self.phase:
            return
        if phase is _P.HEAD:
            self._refuse_head(
                408,
                "Request head not received in time",
                "408: request head from {peer} not complete within {timeout} s; "
                "connection closed (request {request_id})",
                timeout=self._deadlines.timeout(phase),
            )
        elif phase is _P.CLOSING:
            self._abort()
        elif phase is _P.H2_IDLE:
            self._h2.end(NO_ERROR, "idle")
        elif phase is _P.H2_HEADER_BLOCK:
            self._h2.end(PROTOCOL_ERROR, "header block not complete in time")
        elif phase is _P.HANDSHAKE:
            # Nothing can be said to a client that has not finished TLS.
            self._abort()
        else:
            # Waiting for a first or next request: nothing to answer. A TLS
            # client's close is read (and nothing else kept).
            self._close(stop_reading=False)

    def evict(self, *, unsent_lost: bool = False) -> None:
        """
        Cut the connection now (to make room at ``--max-connections``, or at
        the end of the shutdown grace). With ``unsent_lost``, what its
        HTTP/1.1 response still had queued (in the transport and the
        kernel) is taken off the bytes its request counts as sent: the
        access log counts what left the socket.
        """
        if unsent_lost and self._h2 is None:
            unsent = unsent_bytes(self.transport)
            pending = getattr(self._inner, "pending_size", None)
            if pending is not None:
                # What waits for the turn's end in the channel is unsent too.
                unsent += pending()
            requests = getattr(self._inner, "requests", None)
            if unsent and requests:
                request = requests[0]
                request.sentLength = max(0, request.sentLength - unsent)
        self._site._connections.pop(self.transport, None)
        self._abort()

    # IProtocol.

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self._site._connections[transport] = self
        if ISSLTransport.providedBy(transport):
            self.phase = _P.HANDSHAKE
        self._deadlines.start(self, self.phase)
        self._inner.makeConnection(transport)

    def connectionMade(self) -> None:
        """Called by ``makeConnection`` of the wrapped protocol instead."""

    def handshakeCompleted(self) -> None:
        """The TLS handshake is done (``IHandshakeListener``)."""
        if self.phase is _P.HANDSHAKE:
            self._deadlines.cancel(self, _P.HANDSHAKE)
            self._move(_P.FIRST_BYTE)

    def dataReceived(self, data: bytes) -> None:
        phase = self.phase
        if phase is _P.CLOSING:
            # An answer is out and the connection is closing: nothing read
            # now is kept or parsed.
            return
        arrived = phase is _P.FIRST_BYTE or phase is _P.IDLE
        if phase is _P.FIRST_BYTE:
            # Once per connection: its entry would hold it (an idle stream,
            # say) until the deadline passes.
            self._deadlines.cancel(self, phase)
        if arrived:
            # The head's deadline starts below, if one read does not bring it
            # whole (most heads arrive whole).
            self._move(_P.HEAD, timed=False)
            self._head_size = 0
            phase = _P.HEAD
        if phase is _P.HEAD:
            size = self._head_size + len(data)
            if size > MAX_HEAD and self._head_too_large(data):
                return
            self._head_size = size
        if self._sniffed is not None:
            if self._sniffed:
                data = self._sniffed + data
            speaks_h2 = self._speaks_h2(data)
            if speaks_h2 is None:
                self._sniffed = data  # too short to tell yet
                if arrived:
                    self._deadlines.start(self, _P.HEAD)
                return
            self._sniffed = None
            if speaks_h2:
                # HTTP/2 frames its own headers; its connection reports its
                # streams (`h2_state`), and each stream's body has the body
                # timeout.
                self._move(_P.H2_IDLE)
                self._h2 = self._inner = switch_to_h2(
                    self._inner, self._site.reactor, self
                )
                arrived = False
        self._inner.dataReceived(data)
        if arrived and self.phase is _P.HEAD:
            self._deadlines.start(self, _P.HEAD)

    def connectionLost(self, reason: Failure) -> None:
        self._site._connections.pop(self.transport, None)
        # Every kind: phases left earlier may still have theirs (`_move`),
        # and a closed connection must not stay referenced until they pass.
        deadlines = self._deadlines
        for phase in _TIMED:
            deadlines.cancel(self, phase)
        try:
            self._inner.connectionLost(reason)
        finally:
            closed, self._closed = self._closed, None
            for d in closed or ():
                d.callback(None)

    def logPrefix(self) -> str:
        inner = self._inner
        prefix = getattr(inner, "logPrefix", None)
        return prefix() if prefix is not None else type(inner).__name__

    # Answering before a request.

    def _head_too_large(self, data: bytes) -> bool:
        """
        Whether the head being read passes `MAX_HEAD` with ``data``; if so
        it is answered (414 or 431) and the connection closed. Twisted would
        close it without a word for a line over its limit, or answer 400
        with no body for too many header bytes.
        """
        end = data.find(b"\r\n\r\n")
        if end >= 0 and self._head_size + end + 4 <= MAX_HEAD:
            return False
        if self._head_size == 0 and b"\n" not in data[:MAX_HEAD]:
            # The request line alone passes the limit (a head that grows
            # over several reads is counted as a whole: 431).
            status, message = 414, "Request line too long"
        else:
            status, message = 431, "Request header fields too large"
        self._refuse_head(
            status,
            message,
            "{code}: request head from {peer} over {limit} bytes; "
            "connection closed (request {request_id})",
            code=status,
            limit=MAX_HEAD,
        )
        return True

    def _refuse_head(
        self, status: int, message: str, log_format: str, **fields: Any
    ) -> None:
        """Answer a request head with an error before Twisted has it, and close."""
        request_id = new_request_id()
        peer = getattr(self.transport.getPeer(), "host", "-")
        self._log.info(log_format, peer=peer, request_id=request_id, **fields)
        self._flush_inner()
        self.transport.write(
            closing_response(status, message, {"X-Request-Id": request_id})
        )
        self._close(stop_reading=True)

    def _speaks_h2(self, data: bytes) -> bool | None:
        """
        HTTP/2 when ALPN chose ``h2``, or on cleartext when the client
        opens with the HTTP/2 preface (h2c with prior knowledge); ``None``
        until enough bytes say which.
        """
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated is not None:
            return bool(negotiated == b"h2")
        if ISSLTransport.providedBy(self.transport):
            return False
        if len(data) < len(H2_PREFACE):
            return None if H2_PREFACE.startswith(data) else False
        return data.startswith(H2_PREFACE)

    # Closing.

    def _close(self, *, stop_reading: bool) -> None:
        """
        Close once what was written has been sent (within the linger
        deadline).
        """
        transport = self.transport
        self._flush_inner()
        self.closing(stop_reading=stop_reading)
        # As HTTPChannel.loseConnection does: a producer the transport
        # paused would otherwise be resumed instead of the close (and TLS
        # does not close at all while one is registered).
        transport.unregisterProducer()
        transport.loseConnection()

    def _close_when_done(self) -> Deferred[None]:
        """Close once what was written has been sent; fires when closed."""
        d: Deferred[None] = Deferred()
        if self._closed is None:
            self._closed = []
        self._closed.append(d)
        transport = self.transport
        if transport is None:
            return d
        if self._h2 is not None:
            # GOAWAY, then close once the streams in flight have ended.
            self._h2._close_when_idle(transport.loseConnection)
            return d
        self._flush_inner()
        transport.unregisterProducer()
        transport.loseConnection()
        return d

    def _flush_inner(self) -> None:
        """What the HTTP/1.1 channel wrote this turn leaves first."""
        flush = getattr(self._inner, "flush_pending", None)
        if flush is not None:
            flush()

    def _abort(self) -> None:
        if self.phase is not _P.CLOSING:
            self.phase = _P.CLOSING
        transport = self.transport
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()


#: Phases with a deadline.
_TIMED = frozenset(Timeouts().of_phases())

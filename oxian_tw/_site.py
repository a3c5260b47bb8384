# -*- test-case-name: tests.test_site -*-
"""
The ``Site`` that ``app.service()`` and ``twistd oxian`` serve with.

- A request whose ``Host`` breaks the rule of `oxian_tw._host` is answered
  400 before any resource runs (a Klein root's included).
- Request bodies over the limit are refused as soon as the limit is crossed
  (from ``Content-Length`` before a byte of body, or while a chunked body
  arrives). An app mounted with ``app.resource()`` in another ``Site``
  still answers 413 for large bodies, but only once that ``Site`` has read
  them.
- Its connections are tracked, so that a shutdown can wait until what was
  written to each has left the socket (SPEC §6.7): `OxianSite.close_all`.
- It writes no access log line of its own: the app's request owner logs
  each request when its response ends, with how it ended.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import Request, Site
from twisted.web.server import version as server_version
from zope.interface import implementer

from ._config import BODY_TIMEOUT, HEADER_TIMEOUT
from ._context import header_value, new_request_id, request_id_for
from ._cors import CorsPolicy
from ._errors import (
    TOO_LARGE_MESSAGE,
    HttpError,
    closing_response,
    error_entity,
    reason_phrase,
)
from ._host import host_problem
from ._internals import H2, H2_PREFACE, switch_to_h2

if TYPE_CHECKING:
    from ._accesslog import AccessLog


class HttpDate:
    """
    The ``Date`` header's value (RFC 9110 §6.6.1), formatted once per
    second of ``now()`` (whole seconds, as Twisted formats it).
    """

    __slots__ = ("_now", "_second", "_value")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(self._now())
        if second != self._second:
            self._value = datetimeToString(second)
            self._second = second
        return self._value


_http_date = HttpDate()


class _Phase(enum.Enum):
    """Where an HTTP/1.1 connection is in reading its next request."""

    IDLE = "waiting for a request"
    HEAD = "reading a request head"
    BUSY = "the request is read; its response is not done"
    H2 = "HTTP/2: no request heads of its own"
    REFUSED = "answered before a request was read; closing"


_IDLE, _HEAD, _BUSY, _H2, _REFUSED = (
    _Phase.IDLE,
    _Phase.HEAD,
    _Phase.BUSY,
    _Phase.H2,
    _Phase.REFUSED,
)

#: The most bytes a request head may have (Twisted's own limit for the
#: request line and for all header bytes, ``HTTPChannel.totalHeadersSize``).
MAX_HEAD: int = getattr(HTTPChannel, "totalHeadersSize", 16384)


class OxianRequest(Request):
    """
    A request that stops reading a body once it exceeds the site's
    ``body_limit``, and answers 408 when its body makes no progress for the
    site's ``body_timeout``.
    """

    _log = Logger()
    #: The site answers a bad ``Host`` itself; the app need not check again.
    host_checked = True
    body_too_large = False
    _answered_early = False
    _body_received = 0
    _body_timer: IDelayedCall | None = None

    # No attribute of our own on the instance: a streaming request already
    # holds 27 (Twisted's 25, and its producer), the most CPython keeps in
    # a dict that shares its keys with the class's other instances; one
    # more costs every open stream 1.3 KiB.

    def _site(self) -> OxianSite | None:
        site = getattr(self.channel, "site", None)
        return site if isinstance(site, OxianSite) else None

    def _limit(self) -> int | None:
        site = self._site()
        return None if site is None else site.body_limit

    def process(self) -> None:
        """
        What ``Request.process`` does, with the ``Date`` header formatted
        once a second rather than for every request (as uvicorn, aiohttp
        and nginx do), and the route tree serving the request without
        ``render``'s round trip: for a site whose root is the app's route
        tree. Any other root, and ``*``, take Twisted's own ``process``.
        """
        site = self.channel.site  # type: ignore[attr-defined]
        if not getattr(site, "routes_root", False) or self.path == b"*":
            Request.process(self)
            return
        self.site = site
        headers = self.responseHeaders
        headers.setRawHeaders(b"Server", [server_version])
        headers.setRawHeaders(b"Date", [_http_date()])
        self.prepath = []
        self.postpath = list(map(unquote, self.path[1:].split(b"/")))
        try:
            site._serve_routes(self)
        except BaseException:
            self.processingFailed(Failure())  # type: ignore[no-untyped-call]

    def gotLength(self, length: int | None) -> None:
        site = getattr(self.channel, "site", None)
        if not isinstance(site, OxianSite):
            super().gotLength(length)  # type: ignore[no-untyped-call]
            return
        connection = site._connections.get(self.transport)
        if connection is not None:
            # The head is complete: its timer ends (inline: every request
            # passes here).
            if connection._phase is not _H2:
                connection._phase = _BUSY
            timer = connection._head_timer
            if timer is not None:
                connection._head_timer = None
                if timer.active():
                    timer.cancel()
        if length != 0:
            # A body follows (chunked, None, or of a known length).
            self._body_timer = site.reactor.callLater(
                site.body_timeout, self._body_timed_out
            )
            self._guard_request_received()
            if length is not None and length > site.body_limit:
                self._refuse_body()
                length = 0
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        timer = self._body_timer
        if timer is not None:
            timer.reset(self.channel.site.body_timeout)  # type: ignore[attr-defined]
        if self.body_too_large:
            return
        self._body_received += len(data)
        limit = self._limit()
        if limit is not None and self._body_received > limit:
            self._refuse_body()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def _guard_request_received(self) -> None:
        """
        Route ``requestReceived`` through `_guarded_request_received`: only
        a request with a body (its timer) or answered early needs a say
        there, so a request without either pays for no override.
        """
        self.requestReceived = self._guarded_request_received  # type: ignore[method-assign]

    def _guarded_request_received(
        self, command: bytes, path: bytes, version: bytes
    ) -> None:
        # Drop the instance attribute (and the cycle through it).
        self.__dict__.pop("requestReceived", None)
        self._stop_body_timer()
        if self._answered_early:
            # The answer is out and the connection is closing; the rest of a
            # body already in the read buffer completed the request.
            return
        Request.requestReceived(self, command, path, version)

    def finish(self) -> None:
        # ``site`` is the request's once processed (else the class's None).
        site = self.site
        connection = (
            site._connections.get(self.transport)
            if isinstance(site, OxianSite)
            else None
        )
        if connection is not None and connection._phase is _BUSY:
            # The response is out (before Twisted goes on to a pipelined
            # request): the next bytes begin the next request head.
            connection._phase = _IDLE
        super().finish()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure) -> None:
        self.__dict__.pop("requestReceived", None)
        self._stop_body_timer()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _stop_body_timer(self) -> None:
        timer, self._body_timer = self._body_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        timeout = self.channel.site.body_timeout  # type: ignore[attr-defined]
        self._answer_early(
            408,
            "Request body not received in time",
            "408: no request body progress in {timeout} s; connection closed "
            "(request {request_id})",
            timeout=timeout,
        )

    def _refuse_body(self) -> None:
        self.body_too_large = True
        if not isinstance(self.channel, HTTPChannel):
            # HTTP/2 streams finish the request; the app answers 413 then.
            return
        self._stop_body_timer()
        # Twisted answers "Expect: 100-continue" after gotLength; the body
        # is refused, so the client must not be invited to send it.
        self.requestHeaders.removeHeader(b"expect")
        self._answer_early(
            413,
            TOO_LARGE_MESSAGE,
            "413: request body over {limit} bytes refused (request {request_id})",
            limit=self._limit(),
        )

    def _answer_early(
        self, status: int, message: str, log_format: str, **log_fields: Any
    ) -> None:
        """
        Answer ``status`` with the JSON error before the request is complete
        (Twisted has not given it its method and path yet), and close.
        """
        self._answered_early = True
        self._guard_request_received()
        request_id = request_id_for(self)
        self._log.info(log_format, request_id=request_id, **log_fields)
        entity, body = error_entity(status, message)
        headers = {name: [value] for name, value in entity.items()}
        headers["X-Request-Id"] = [request_id]
        site = self._site()
        cors = getattr(site, "cors", None)
        if cors is not None:
            for name, value in cors.response_headers(header_value(self, b"origin")):
                headers.setdefault(name, []).append(value)
        channel = self.channel
        if isinstance(channel, HTTPChannel):
            headers["Connection"] = ["close"]
            channel.writeHeaders(
                b"HTTP/1.1",
                str(status).encode("ascii"),
                reason_phrase(status).encode("ascii"),
                Headers(headers),
            )
            channel.write(body)
            channel.loseConnection()
        else:
            # An HTTP/2 stream: the response, then the stream ends; the
            # connection and its other streams go on.
            self.setResponseCode(status)
            for name, values in headers.items():
                self.responseHeaders.setRawHeaders(name, values)
            self.write(body)
            self.finish()
        access_log = getattr(site, "access_log", None)
        if site is not None and access_log is not None:
            # The request line is not the request's yet (Twisted sets it once
            # the body has arrived): the line says "-" for it.
            self.sentLength = len(body)
            now = site.reactor.seconds()
            access_log.record(
                self,
                request_id=request_id,
                status=status,
                started=now,
                now=now,
                ended="complete",
                request_line=False,
            )


class OxianChannel(HTTPChannel):
    """
    An HTTP/1.1 connection of an `OxianSite`: Twisted's ``HTTPChannel``,
    writing each response head as one piece, and asking the transport for
    its addresses once.
    """

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


@implementer(IProtocol)
class OxianConnection:
    """
    One client connection of an `OxianSite`: its `OxianChannel` (or, once
    the client speaks HTTP/2, its HTTP/2 connection), tracked from
    ``makeConnection`` to ``connectionLost`` so that a shutdown can close
    it once what was written has left.
    """

    __slots__ = (
        "_inner",
        "_site",
        "transport",
        "_closed",
        "_h2",
        "_sniffed",
        "_phase",
        "_head_timer",
        "_head_size",
    )
    _log = Logger()

    def __init__(self, inner: Any, site: OxianSite) -> None:
        self._inner = inner
        self._site = site
        self.transport: Any = None
        self._closed: list[Deferred[None]] | None = None
        #: The HTTP/2 connection, once the client spoke HTTP/2.
        self._h2: Any = None
        #: Bytes read before the protocol was known (``None``: known).
        self._sniffed: bytes | None = b"" if H2 else None
        #: Where an HTTP/1.1 connection is in reading its next request
        #: (its requests move it on: `OxianRequest`).
        self._phase = _IDLE
        #: Ends a request head not complete within ``header_timeout``.
        self._head_timer: IDelayedCall | None = None
        #: Bytes of the request head being read.
        self._head_size = 0

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self._site._connections[transport] = self
        self._inner.makeConnection(transport)

    def connectionMade(self) -> None:
        """Called by ``makeConnection`` of the wrapped protocol instead."""

    def dataReceived(self, data: bytes) -> None:
        if self._phase is _IDLE:
            self._phase = _HEAD
            self._head_size = 0
        if self._phase is _HEAD:
            size = self._head_size + len(data)
            if size > MAX_HEAD and self._head_too_large(data):
                return
            self._head_size = size
        elif self._phase is _REFUSED:
            return
        if self._sniffed is not None:
            if self._sniffed:
                data = self._sniffed + data
            speaks_h2 = self._speaks_h2(data)
            if speaks_h2 is None:
                self._sniffed = data  # too short to tell yet
                self._start_head_timer()
                return
            self._sniffed = None
            if speaks_h2:
                # HTTP/2 frames its own headers; Twisted's idle timeout and
                # the body timeout of each stream apply.
                self._phase = _H2
                self._h2 = self._inner = switch_to_h2(self._inner, self._site.reactor)
        self._inner.dataReceived(data)
        if self._phase is _HEAD:
            # Most heads arrive whole: a timer only for those that do not.
            self._start_head_timer()

    def _start_head_timer(self) -> None:
        if self._head_timer is None and self.transport is not None:
            site = self._site
            self._head_timer = site.reactor.callLater(
                site.header_timeout, self._head_timed_out
            )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse_head(
            408,
            "Request head not received in time",
            "408: request head from {peer} not complete within {timeout} s; "
            "connection closed (request {request_id})",
            timeout=self._site.header_timeout,
        )

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
        self._phase = _REFUSED
        request_id = new_request_id()
        peer = getattr(self.transport.getPeer(), "host", "-")
        self._log.info(log_format, peer=peer, request_id=request_id, **fields)
        timer, self._head_timer = self._head_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.transport.write(
            closing_response(status, message, {"X-Request-Id": request_id})
        )
        self.transport.loseConnection()

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

    def connectionLost(self, reason: Failure) -> None:
        self._site._connections.pop(self.transport, None)
        timer, self._head_timer = self._head_timer, None
        if timer is not None and timer.active():
            timer.cancel()
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _close(self) -> Deferred[None]:
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
        # As HTTPChannel.loseConnection does: a producer the transport
        # paused would otherwise be resumed instead of the close.
        transport.unregisterProducer()
        transport.loseConnection()
        return d

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()


class _Refused(Protocol):
    """A connection past ``max_connections``: a 503, closed at once."""

    _RESPONSE = closing_response(503, "Too many connections", {"Retry-After": "1"})

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._RESPONSE)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """The request is not read."""


class OxianSite(Site):
    """
    A ``Site`` for one app.

    :param resource: the root resource.
    :param body_limit: the largest request body accepted, in bytes.
    :param cors: the app's CORS policy, for the responses the site writes
        itself (an early ``413``).
    :param access_log: where the site logs the requests it answers itself.
    :param max_connections: the most client connections open at once;
        one more is answered 503 and closed (``None``: no cap).
    :param header_timeout: seconds an HTTP/1.1 request head may take from
        its first byte; past it the connection gets 408 and is closed.
    :param body_timeout: seconds a request body may go without progress;
        past it the request gets 408 (and an HTTP/1.1 connection closes).
    :param refusal: the resource answering a request refused before its
        resource is looked up (a bad ``Host``) with an error; without it
        such requests are served as they come.
    :param routes_root: ``resource`` is the app's route tree itself.
    """

    requestFactory = OxianRequest
    # (Typed as a factory of Twisted's wrapper; any protocol factory does.)
    protocol = OxianChannel  # type: ignore[assignment]
    _log = Logger()
    #: The listener logs a URL instead of Twisted's "Starting factory" lines.
    noisy = False

    def __init__(
        self,
        resource: IResource,
        *,
        body_limit: int,
        cors: CorsPolicy | None = None,
        access_log: AccessLog | None = None,
        refusal: Callable[[HttpError], IResource] | None = None,
        max_connections: int | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        routes_root: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, **kwargs)  # type: ignore[no-untyped-call]
        #: The root is the app's route tree (a leaf no encoder wraps): its
        #: requests take `OxianRequest.process`'s short path.
        self.routes_root = routes_root
        self._refusal = refusal
        self.body_limit = body_limit
        self.cors = cors
        self.access_log = access_log
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._refused_logged: float | None = None
        self.body_timeout = body_timeout
        #: Open connections by their transport.
        self._connections: dict[Any, OxianConnection] = {}

    def buildProtocol(self, addr: Any) -> Any:
        cap = self.max_connections
        if cap is not None and len(self._connections) >= cap:
            now = self.reactor.seconds()
            last = self._refused_logged
            if last is None or now - last >= 10:
                # At most one line per 10 s however many are refused.
                self._refused_logged = now
                self._log.warn(
                    "{cap} connections open (--max-connections): new ones "
                    "get 503 and are closed",
                    cap=cap,
                )
            return _Refused()
        inner = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if inner is None:
            return None
        return OxianConnection(inner, self)

    def acceptableProtocols(self) -> list[bytes]:
        """
        What ALPN may choose: ``h2`` only where its connections can switch
        to HTTP/2 (`oxian_tw._internals.H2`), then ``http/1.1``.
        """
        return [b"h2", b"http/1.1"] if H2 else [b"http/1.1"]

    def _refused(self, request: Request) -> IResource | None:
        """The resource answering ``request`` when its ``Host`` is refused."""
        if self._refusal is None:
            return None
        hosts = request.requestHeaders.getRawHeaders(b"host")
        problem = host_problem(
            None if hosts is None else list(hosts), request.clientproto
        )
        return None if problem is None else self._refusal(HttpError(400, problem))

    def getResourceFor(self, request: Request) -> IResource:
        refused = self._refused(request)
        if refused is not None:
            return refused
        # Site.getResourceFor, but for its copy.copy of the prepath, which
        # is empty here (Request.process has just set it).
        request.site = self
        request.sitepath = list(request.prepath or ())  # type: ignore[attr-defined]
        root: IResource = self.resource
        if root.isLeaf:
            return root
        child: IResource = getChildForRequest(root, request)
        return child

    def _serve_routes(self, request: OxianRequest) -> None:
        """
        Serve ``request`` at a site whose root is the app's route tree
        (``routes_root``): what ``getResourceFor`` and ``render`` would do,
        without their round trip through the resource interface.
        """
        request.sitepath = []  # type: ignore[attr-defined]
        # The route tree's `oxian_tw._dispatch.RouteResource`, or a refusal.
        resource: Any = self._refused(request) or self.resource
        resource._serve(request)

    def log(self, request: Any) -> None:
        """No line here: the app logs each request when its response ends."""

    @property
    def open_connections(self) -> int:
        """Client connections open now."""
        return len(self._connections)

    def close_all(self, timeout: float, clock: IReactorTime) -> Deferred[None]:
        """
        Close every connection once what was written to it has been sent
        (idle keep-alive connections at once); abort those still open after
        ``timeout`` seconds. Fires when all are closed.
        """
        connections = list(self._connections.values())
        if not connections:
            return succeed(None)
        closing = DeferredList([c._close() for c in connections])
        cutoff = clock.callLater(timeout, self._cut, connections)

        def closed(_: Any) -> None:
            if cutoff.active():
                cutoff.cancel()

        return closing.addCallback(closed)

    def _cut(self, connections: list[OxianConnection]) -> None:
        left = [c for c in connections if c.transport in self._connections]
        if left:
            self._log.warn(
                "{count} connections still sending after the shutdown grace; cut",
                count=len(left),
            )
        for connection in left:
            connection._abort()

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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IProtocol, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

from ._context import header_value, request_id_for
from ._cors import CorsPolicy
from ._errors import TOO_LARGE_MESSAGE, HttpError, error_body
from ._host import host_problem
from ._internals import H2, H2_PREFACE, switch_to_h2
from ._results import dump_json

if TYPE_CHECKING:
    from ._accesslog import AccessLog


class OxianRequest(Request):
    """
    A request that stops reading a body once it exceeds the site's
    ``body_limit``.
    """

    _log = Logger()
    #: The site answers a bad ``Host`` itself; the app need not check again.
    host_checked = True
    body_too_large = False
    _answered_early = False
    _body_received = 0

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "body_limit", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if length is not None and limit is not None and length > limit:
            self._refuse_body()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        limit = self._limit()
        if limit is not None and self._body_received > limit:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._answered_early:
            # The 413 is out and the connection is closing; the rest of a
            # body already in the read buffer completed the request.
            return
        super().requestReceived(command, path, version)

    def _refuse_body(self) -> None:
        self.body_too_large = True
        if not isinstance(self.channel, HTTPChannel):
            # HTTP/2 streams finish the request; the app answers 413 then.
            return
        self._answered_early = True
        # Twisted answers "Expect: 100-continue" after gotLength; the body
        # is refused, so the client must not be invited to send it.
        self.requestHeaders.removeHeader(b"expect")
        request_id = request_id_for(self)
        body = dump_json(error_body(413, TOO_LARGE_MESSAGE))
        headers = Headers(
            {
                "Content-Type": ["application/json; charset=utf-8"],
                "Content-Length": [str(len(body))],
                "Connection": ["close"],
                "X-Request-Id": [request_id],
            }
        )
        site = getattr(self.channel, "site", None)
        cors = getattr(site, "cors", None)
        if cors is not None:
            for name, value in cors.response_headers(header_value(self, b"origin")):
                headers.addRawHeader(name, value)
        self._log.info(
            "413: request body over {limit} bytes refused (request {request_id})",
            limit=self._limit(),
            request_id=request_id,
        )
        self.channel.writeHeaders(b"HTTP/1.1", b"413", b"Content Too Large", headers)
        self.channel.write(body)
        self.channel.loseConnection()
        access_log = getattr(site, "access_log", None)
        if access_log is not None:
            # The request line is not the request's yet (Twisted sets it once
            # the body has arrived): the line says "-" for it.
            self.sentLength = len(body)
            now = site.reactor.seconds()
            access_log.record(
                self,
                request_id=request_id,
                status=413,
                started=now,
                now=now,
                ended="complete",
                request_line=False,
            )


@implementer(IProtocol)
class OxianConnection:
    """
    One client connection of an `OxianSite`: the HTTP protocol Twisted
    builds for it, tracked from ``makeConnection`` to ``connectionLost`` so
    that a shutdown can close it once what was written has left.
    """

    __slots__ = ("_inner", "_site", "transport", "_closed", "_h2", "_sniffed")

    def __init__(self, inner: Any, site: OxianSite) -> None:
        self._inner = inner
        self._site = site
        self.transport: Any = None
        self._closed: list[Deferred[None]] | None = None
        #: The HTTP/2 connection, once the client spoke HTTP/2.
        self._h2: Any = None
        #: Bytes read before the protocol was known (``None``: known).
        self._sniffed: bytes | None = b"" if H2 else None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self._site._connections[self] = None
        self._inner.makeConnection(transport)

    def connectionMade(self) -> None:
        """Called by ``makeConnection`` of the wrapped protocol instead."""

    def dataReceived(self, data: bytes) -> None:
        if self._sniffed is not None:
            if self._sniffed:
                data = self._sniffed + data
            speaks_h2 = self._speaks_h2(data)
            if speaks_h2 is None:
                self._sniffed = data  # too short to tell yet
                return
            self._sniffed = None
            if speaks_h2:
                self._h2 = switch_to_h2(self._inner, self._site.reactor)
        self._inner.dataReceived(data)

    def _speaks_h2(self, data: bytes) -> bool | None:
        """
        HTTP/2 when ALPN chose ``h2``, or on cleartext when the client
        opens with the HTTP/2 preface (h2c with prior knowledge); ``None``
        until enough bytes say which.
        """
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated is not None:
            return negotiated == b"h2"
        if ISSLTransport.providedBy(self.transport):
            return False
        if len(data) < len(H2_PREFACE):
            return None if H2_PREFACE.startswith(data) else False
        return data.startswith(H2_PREFACE)

    def connectionLost(self, reason: Failure) -> None:
        self._site._connections.pop(self, None)
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


class OxianSite(Site):
    """
    A ``Site`` for one app.

    :param resource: the root resource.
    :param body_limit: the largest request body accepted, in bytes.
    :param cors: the app's CORS policy, for the responses the site writes
        itself (an early ``413``).
    :param access_log: where the site logs the requests it answers itself.
    :param refusal: the resource answering a request refused before its
        resource is looked up (a bad ``Host``) with an error; without it
        such requests are served as they come.
    """

    requestFactory = OxianRequest
    _log = Logger()

    def __init__(
        self,
        resource: IResource,
        *,
        body_limit: int,
        cors: CorsPolicy | None = None,
        access_log: AccessLog | None = None,
        refusal: Callable[[HttpError], IResource] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, **kwargs)
        self._refusal = refusal
        self.body_limit = body_limit
        self.cors = cors
        self.access_log = access_log
        self._connections: dict[OxianConnection, None] = {}

    def buildProtocol(self, addr: Any) -> Any:
        inner = super().buildProtocol(addr)
        return OxianConnection(inner, self) if inner is not None else None

    def getResourceFor(self, request: Request) -> IResource:
        if self._refusal is not None:
            problem = host_problem(
                request.requestHeaders.getRawHeaders(b"host"), request.clientproto
            )
            if problem is not None:
                return self._refusal(HttpError(400, problem))
        return super().getResourceFor(request)  # type: ignore[no-any-return]

    def log(self, request: Request) -> None:
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
        connections = list(self._connections)
        if not connections:
            return succeed(None)
        closing = DeferredList([c._close() for c in connections])
        cutoff = clock.callLater(timeout, self._cut, connections)

        def closed(_: Any) -> None:
            if cutoff.active():
                cutoff.cancel()

        return closing.addCallback(closed)

    def _cut(self, connections: list[OxianConnection]) -> None:
        left = [c for c in connections if c in self._connections]
        if left:
            self._log.warn(
                "{count} connections still sending after the shutdown grace; cut",
                count=len(left),
            )
        for connection in left:
            connection._abort()

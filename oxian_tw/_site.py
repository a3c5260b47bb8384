# -*- test-case-name: tests.test_site -*-
"""
The ``Site`` that ``app.service()`` and ``twistd oxian`` serve with.

- Its connections are `oxian_tw._connection.OxianConnection`s: every phase
  in which one waits for its client has a deadline, all on two shared
  timers (`oxian_tw._deadlines`): one for the connections' phases, one
  for request bodies. Twisted's own per-connection idle timer is off.
- At ``max_connections``, a new connection evicts the one that has waited
  longest with no request being handled and no stream open; only when
  every connection is busy is the new one answered 503.
- A request whose ``Host`` breaks the rule of `oxian_tw._host` is answered
  400 before any resource runs (a Klein root's included).
- Its requests (`oxian_tw._request.OxianRequest`) refuse bodies over the
  limit as soon as the limit is crossed. An app mounted with
  ``app.resource()`` in another ``Site`` still answers 413 for large
  bodies, but only once that ``Site`` has read (and parsed) them.
- Its connections are tracked, so that a shutdown can wait until what was
  written to each has left the socket (SPEC §6.7): `OxianSite.close_all`.
- It writes no access log line of its own: the app's request owner logs
  each request when its response ends, with how it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import Request, Site

from ._channel import OxianChannel
from ._connection import WAITING, OxianConnection, Phase, Timeouts
from ._cors import CorsPolicy
from ._deadlines import Deadlines
from ._errors import HttpError, closing_response
from ._h2 import H2
from ._host import host_problem
from ._llhttp import LLHTTP, LlhttpChannel
from ._producer import Flusher
from ._ratelimit import too_many
from ._request import BODY, OxianRequest
from ._requestid import NO_PROXIES, TrustedProxies

if TYPE_CHECKING:
    from ._accesslog import AccessLog

__all__ = ("OxianSite",)

_DEFAULT_TIMEOUTS = Timeouts()

#: At most one warning per this many seconds about a full server.
_FULL_LOG_EVERY = 10.0


class _Refused(Protocol):
    """
    A connection refused at once: past ``max_connections`` a 503, past
    ``--rate-connections`` the 429 ``error``; closed without reading.
    """

    _FULL = closing_response(503, "Too many connections", {"Retry-After": "1"})

    def __init__(self, error: HttpError | None = None) -> None:
        self._response = (
            self._FULL
            if error is None
            else closing_response(error.status_code, error.message, error.headers)
        )

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._response)
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
    :param timeouts: the connections' deadlines (`Timeouts`), and the
        request body's: a request head past its deadline gets 408 and the
        connection is closed; a body without progress gets 408.
    :param trusted_proxies: peers whose ``X-Request-Id`` is taken.
    :param refusal: the resource answering a request refused before its
        resource is looked up (a bad ``Host``) with an error; without it
        such requests are served as they come.
    :param routes_root: ``resource`` is the app's route tree itself.
    :param turn_end: the end of the reactor turn (the app's
        `oxian_tw._producer.Flusher`); a site of its own otherwise.
    :param http_parser: ``"llhttp"`` (`oxian_tw._llhttp.LlhttpChannel`,
        where it can be used) or ``"twisted"`` (Twisted's parser).
    :param connection_limit: ``--rate-connections``: takes a token for a
        peer address, giving the seconds to wait when it has none
        (`oxian_tw._ratelimit.TokenBuckets.take`).
    """

    # (Its constructor does not take the deprecated positional ``queued``.)
    requestFactory = OxianRequest  # type: ignore[assignment]
    # (Typed as a factory of Twisted's wrapper; any protocol factory does.)
    protocol = LlhttpChannel if LLHTTP else OxianChannel  # type: ignore[assignment]
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
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        trusted_proxies: TrustedProxies = NO_PROXIES,
        routes_root: bool = False,
        connection_limit: Callable[[str], float] | None = None,
        http_parser: str = "llhttp",
        turn_end: Flusher | None = None,
        **kwargs: Any,
    ) -> None:
        # No Twisted idle timer per connection: every phase has a deadline
        # on the shared timers below.
        kwargs.setdefault("timeout", None)
        super().__init__(resource, **kwargs)  # type: ignore[no-untyped-call]
        if http_parser == "twisted" or not LLHTTP:
            self.protocol = OxianChannel
        if http_parser == "llhttp" and not LLHTTP:
            self._log.info(
                "HTTP/1.1 is parsed by Twisted's parser: httptools cannot be "
                "imported, or this Twisted's HTTPChannel differs "
                "(oxian_tw._llhttp.LLHTTP)"
            )
        #: The root is the app's route tree (a leaf no encoder wraps): its
        #: requests take `OxianRequest.process`'s short path.
        self.routes_root = routes_root
        self._refusal = refusal
        self.body_limit = body_limit
        self.cors = cors
        self.access_log = access_log
        self.max_connections = max_connections
        self.timeouts = timeouts
        self.trusted_proxies = trusted_proxies
        self._connection_limit = connection_limit
        self._full_logged: float | None = None
        #: The deadlines of the connections' phases.
        self.phase_deadlines: Deadlines[Phase] = Deadlines(
            self.reactor, timeouts.of_phases()
        )
        #: The deadlines of request bodies (progress, not the whole body).
        self.body_deadlines: Deadlines[str] = Deadlines(
            self.reactor, {BODY: timeouts.body}
        )
        #: The end of the reactor turn, when what plain TCP connections
        #: wrote leaves (the app's, shared with its streams).
        self.turn_end = Flusher(lambda: self.reactor) if turn_end is None else turn_end
        #: Open connections by their transport.
        self._connections: dict[Any, OxianConnection] = {}

    #: Requests recognise the site without importing it.
    is_oxian_site = True

    @property
    def header_timeout(self) -> float:
        """Seconds a request head may take from its first byte."""
        return self.timeouts.header

    @property
    def body_timeout(self) -> float:
        """Seconds a request body may go without progress."""
        return self.timeouts.body

    def buildProtocol(self, addr: Any) -> Any:
        limit = self._connection_limit
        if limit is not None:
            wait = limit(getattr(addr, "host", None) or "-")
            if wait:
                return _Refused(too_many("connections", wait))
        cap = self.max_connections
        if cap is not None and len(self._connections) >= cap:
            # Make room: the connection that has waited longest with no
            # request being handled and no stream open goes.
            oldest = self._longest_waiting()
            if oldest is None:
                self._full(
                    "{cap} connections open and busy (--max-connections): "
                    "new ones get 503 and are closed"
                )
                return _Refused()
            connection, phase = oldest
            self._full(
                "{cap} connections open (--max-connections): the one waiting "
                "longest ({phase}) is closed for each new one",
                phase=phase.value,
            )
            connection.evict()
        inner = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if inner is None:
            return None
        return OxianConnection(inner, self, self.phase_deadlines)

    def _longest_waiting(self) -> tuple[OxianConnection, Phase] | None:
        """
        The connection waiting longest in a `WAITING` phase (deadlines left
        behind by a connection that moved on are dropped on the way).
        """
        deadlines = self.phase_deadlines
        while True:
            oldest = deadlines.oldest(WAITING)
            if oldest is None:
                return None
            connection, phase = oldest
            if connection.phase is phase and connection.transport in self._connections:
                return oldest
            deadlines.cancel(connection, phase)

    def _full(self, format: str, **fields: Any) -> None:
        """Say the server is full, at most once per `_FULL_LOG_EVERY` seconds."""
        now = self.reactor.seconds()
        last = self._full_logged
        if last is None or now - last >= _FULL_LOG_EVERY:
            self._full_logged = now
            self._log.warn(format, cap=self.max_connections, **fields)

    def acceptableProtocols(self) -> list[bytes]:
        """
        What ALPN may choose: ``h2`` only where its connections can switch
        to HTTP/2 (`oxian_tw._h2.H2`), then ``http/1.1``.
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

    def close_all(
        self,
        timeout: float,
        clock: IReactorTime,
        cutting: Callable[[], None] | None = None,
    ) -> Deferred[None]:
        """
        Close every connection once what was written to it has been sent
        (idle keep-alive connections at once); abort those still open after
        ``timeout`` seconds, calling ``cutting`` first. Fires when all are
        closed.
        """
        connections = list(self._connections.values())
        if not connections:
            return succeed(None)
        closing = DeferredList([c._close_when_done() for c in connections])
        cutoff = clock.callLater(timeout, self._cut, connections, cutting)

        def closed(_: Any) -> None:
            if cutoff.active():
                cutoff.cancel()

        return closing.addCallback(closed)

    def _cut(
        self,
        connections: list[OxianConnection],
        cutting: Callable[[], None] | None,
    ) -> None:
        left = [c for c in connections if c.transport in self._connections]
        if left:
            self._log.warn(
                "{count} connections still sending after the shutdown grace; cut",
                count=len(left),
            )
        if cutting is not None:
            cutting()
        for connection in left:
            connection.evict(unsent_lost=True)

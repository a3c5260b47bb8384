# -*- test-case-name: tests.test_testing -*-
"""
An in-memory client for testing oxian_tw apps with trial (SPEC §10).

`TestClient` runs the real app — real ``Site``, real ``twisted.web``
requests, a real HTTP client (``Agent``) — over in-memory transports, on a
deterministic clock. Nothing touches a socket or the global reactor::

    client = TestClient("routes")
    response = self.successResultOf(client.get("/users/1"))
    self.assertEqual(response.json(), {"id": "1"})
"""

from __future__ import annotations

import json as _json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.client import Agent
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IBodyProducer, IResponse
from twisted.web.resource import IResource
from zope.interface import implementer

from ._app import OxianApp
from ._context import Headers
from .sse import Decoder, Event

__all__ = ("TestClient", "TestResponse")

_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SERVER = IPv4Address("TCP", "127.0.0.1", 80)
_CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body written at once (no cooperator, no reactor)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IPushProducer)
class _ServerTransport(iosim.FakeTransport):
    """
    The server's end of an in-memory connection that behaves like a socket
    for a push producer: past ``bufferSize`` unread bytes it pauses the
    producer, and resumes it once the client has read everything. A client
    that stops reading leaves the bytes here.
    """

    bufferSize = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.reading = True
        #: Bytes the client will still read before it stalls (``None``: all).
        self.read_limit: int | None = None
        self._buffered = 0
        self._paused = False

    def write(self, data: bytes) -> None:
        if self.disconnecting:
            return
        super().write(data)  # type: ignore[no-untyped-call]
        self._buffered += len(data)
        if (
            self._buffered > self.bufferSize
            and self.producer is not None
            and self.streamingProducer
            and not self._paused
        ):
            self._paused = True
            self.producer.pauseProducing()

    def abortConnection(self) -> None:
        # Unlike iosim's, an abort drops what was not delivered.
        self.stream = []
        self._buffered = 0
        self.loseConnection()  # type: ignore[no-untyped-call]

    def reportDisconnect(self) -> None:
        # As a TCP transport does: its producer (the HTTP channel, and
        # through it a streaming response) learns first.
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        super().reportDisconnect()  # type: ignore[no-untyped-call]

    def getOutBuffer(self) -> bytes | None:
        if not self.reading:
            return None
        data: bytes = super().getOutBuffer()  # type: ignore[no-untyped-call]
        limit = self.read_limit
        if limit is not None and data:
            data, rest = data[:limit], data[limit:]
            self.read_limit = limit - len(data)
            if rest:
                # The client's window is full: the rest stays unread here.
                self.stream = [rest]
                self._buffered = len(rest)
                self.reading = False
                return data or None
        self._buffered = 0
        if self._paused and self.producer is not None:
            self._paused = False
            self.producer.resumeProducing()
        return data


class _ClientTransport(iosim.FakeTransport):
    """
    The client's end: keeps the raw response head, because ``Agent`` hides
    the connection headers (``Content-Length``, ``Transfer-Encoding``)
    that tests want to see.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.head = b""
        self._head_done = False

    def bufferReceived(self, buf: Any) -> None:
        if not self._head_done and isinstance(buf, bytes):
            self.head += buf
            if b"\r\n\r\n" in self.head:
                self.head = self.head.partition(b"\r\n\r\n")[0]
                self._head_done = True
        super().bufferReceived(buf)  # type: ignore[no-untyped-call]

    def connection_headers(self) -> list[tuple[bytes, bytes]]:
        """The connection headers of the response head received."""
        found = []
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in _CONNECTION_HEADERS:
                found.append((name.strip(), value.strip()))
        return found


_CONNECTION_HEADERS = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
)


class _Collector(Protocol):
    def __init__(self, response: TestResponse) -> None:
        self._response = response

    def dataReceived(self, data: bytes) -> None:
        self._response._chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._response._ended(reason)


class TestResponse:
    """
    A response as far as it has arrived.

    :ivar code: the status code.
    :ivar headers: the response headers (case-insensitive ``get``).
    """

    __test__ = False

    def __init__(self, response: IResponse, client: TestClient, pump: Any) -> None:
        self._client = client
        self._pump = pump
        self.code: int = response.code
        raw = response.headers.copy()
        for name, value in pump.clientIO.connection_headers():
            if not raw.hasHeader(name):
                raw.addRawHeader(name, value)
        self.headers = Headers(raw)
        self._chunks: list[bytes] = []
        self.complete = False
        self._waiting: list[Deferred[TestResponse]] = []
        self._decoder: Decoder | None = None
        self._events: list[Event] = []
        self._decoded = 0
        response.deliverBody(_Collector(self))

    def _ended(self, reason: Failure | None) -> None:
        self.complete = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self)

    @property
    def body(self) -> bytes:
        """The body bytes received so far."""
        if len(self._chunks) > 1:
            self._chunks[:] = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def text(self) -> str:
        """The body received so far, decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def events(self) -> list[Event]:
        """
        The Server-Sent Events received so far, decoded as a browser's
        ``EventSource`` would (`oxian_tw.sse.Decoder`); comments and
        heartbeats are left out.
        """
        if self._decoder is None:
            self._decoder = Decoder()
        body = self.body
        fresh, self._decoded = body[self._decoded :], len(body)
        self._events += [e for e in self._decoder.feed(fresh) if isinstance(e, Event)]
        return list(self._events)

    @property
    def retry(self) -> int | None:
        """The last ``retry`` the server sent (ms), or ``None``."""
        self.events()
        assert self._decoder is not None
        return self._decoder.retry

    @property
    def unread(self) -> int:
        """Bytes the server wrote that this client has not read yet."""
        return sum(len(b) for b in self._pump.serverIO.stream)

    def stop_reading(self) -> None:
        """Stop reading, like a client whose TCP window is full."""
        self._pump.serverIO.reading = False

    def resume_reading(self) -> None:
        """Read again, delivering everything that is ready."""
        self._pump.serverIO.read_limit = None
        self._pump.serverIO.reading = True
        self._client.flush()

    def disconnect(self) -> None:
        """Close the connection from the client's side, and deliver that."""
        self._pump.clientIO.loseConnection()
        self._client.flush()

    def finished(self) -> Deferred[TestResponse]:
        """A Deferred that fires with this response once its body has ended."""
        if self.complete:
            return succeed(self)
        d: Deferred[TestResponse] = Deferred()
        self._waiting.append(d)
        return d


class TestClient:
    """
    Requests against an app, in memory.

    :param app_or_routes_dir: an `OxianApp`, or a route directory to build
        one from (on ``clock``).
    :param clock: the app's clock; a new ``Clock`` when a directory is
        given, the app's own when an app is.
    :param resource: what to serve instead of the app's routes alone: a
        resource that mounts ``app.resource()`` (a Klein app's), served by
        ``app.site(resource)``.
    """

    __test__ = False

    def __init__(
        self,
        app_or_routes_dir: OxianApp | str | os.PathLike[str],
        clock: IReactorTime | None = None,
        *,
        resource: IResource | None = None,
    ) -> None:
        if isinstance(app_or_routes_dir, OxianApp):
            self.app = app_or_routes_dir
            self.clock = clock if clock is not None else self.app.clock
        else:
            self.clock = clock if clock is not None else Clock()
            self.app = OxianApp(app_or_routes_dir, reactor=self.clock)
        self._site = self.app.site(resource)
        self._network = MemoryReactorClock()
        self._agent = Agent(self._network)
        self._pumps: list[iosim.IOPump] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        form: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        read_limit: int | None = None,
    ) -> Deferred[TestResponse]:
        """
        Send a request. The Deferred fires with a `TestResponse` once the
        response head has arrived (usually at once).

        :param query: added to the path's query string.
        :param json: a body sent as ``application/json``.
        :param form: a body sent as ``application/x-www-form-urlencoded``.
        :param body: raw body bytes (set the content type in ``headers``).
        :param read_limit: the client reads this many bytes of the
            response (head included), then stalls like a client whose
            window is full, until `TestResponse.resume_reading`.
        """
        raw_headers = TwistedHeaders()
        for name, value in (headers or {}).items():
            raw_headers.addRawHeader(name, value)
        if json is not None:
            body = _json.dumps(json).encode("utf-8")
            raw_headers.setRawHeaders("content-type", ["application/json"])
        elif form is not None:
            body = urlencode(form, doseq=True).encode("utf-8")
            raw_headers.setRawHeaders(
                "content-type", ["application/x-www-form-urlencoded"]
            )
        url = "http://127.0.0.1" + quote(path, safe=_SAFE_PATH + "?")
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query, doseq=True)
        producer = _BytesProducer(body) if body is not None else None
        d = self._agent.request(
            method.encode("ascii"), url.encode("ascii"), raw_headers, producer
        )
        pump = self._connect(read_limit)
        response: Deferred[TestResponse] = d.addCallback(TestResponse, self, pump)
        self.flush()
        return response

    def get(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``GET path``; keywords as for `request`."""
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``HEAD path``; keywords as for `request`."""
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``OPTIONS path``; keywords as for `request`."""
        return self.request("OPTIONS", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``POST path``; keywords as for `request`."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``PUT path``; keywords as for `request`."""
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``PATCH path``; keywords as for `request`."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Deferred[TestResponse]:
        """``DELETE path``; keywords as for `request`."""
        return self.request("DELETE", path, **kwargs)

    def flush(self) -> None:
        """
        Deliver every byte that is ready, both ways, and run the calls that
        are due now (``callLater(0, ...)``, such as ``done`` callbacks).
        """
        self._pump()
        advance = getattr(self.clock, "advance", None)
        if advance is not None:
            advance(0)
            self._pump()

    def _pump(self) -> None:
        for pump in list(self._pumps):
            pump.flush()
            if pump.clientIO.disconnected and pump.serverIO.disconnected:
                self._pumps.remove(pump)

    def advance(self, seconds: float) -> None:
        """
        Move the app's clock forward by ``seconds`` and deliver what became
        ready. Like a real reactor, the clock stops at each timed call on
        the way, and bytes are delivered before the next one runs.
        """
        clock = self.clock
        target = clock.seconds() + seconds
        while True:
            due = [
                call.getTime()
                for call in getattr(clock, "getDelayedCalls", list)()
                if call.active() and call.getTime() <= target
            ]
            if not due:
                break
            clock.advance(max(0.0, min(due) - clock.seconds()))  # type: ignore[attr-defined]
            self.flush()
        clock.advance(target - clock.seconds())  # type: ignore[attr-defined]
        self.flush()

    def _connect(self, read_limit: int | None = None) -> iosim.IOPump:
        # Agent asked the memory reactor for a TCP connection (one per
        # request: its pool is not persistent); answer it with the app's
        # Site over in-memory transports.
        factory = self._network.tcpClients.pop(0)[2]
        server = self._site.buildProtocol(_CLIENT)
        client = factory.buildProtocol(_SERVER)
        server_io = _ServerTransport(
            server, isServer=True, hostAddress=_SERVER, peerAddress=_CLIENT
        )
        # Set before connecting: iosim delivers the request, and whatever
        # the server answers at once, while it connects.
        server_io.read_limit = read_limit
        pump = iosim.connect(
            server,
            server_io,
            client,
            _ClientTransport(
                client, isServer=False, hostAddress=_CLIENT, peerAddress=_SERVER
            ),
            clock=self.clock,
        )
        self._pumps.append(pump)
        connected: iosim.IOPump = pump
        return connected

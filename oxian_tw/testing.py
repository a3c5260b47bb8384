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
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.client import Agent
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from ._app import OxianApp
from ._context import Headers

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

    def __init__(self, response: IResponse) -> None:
        self.code: int = response.code
        self.headers = Headers(response.headers)
        self._chunks: list[bytes] = []
        self.complete = False
        self._waiting: list[Deferred[TestResponse]] = []
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
    """

    __test__ = False

    def __init__(
        self,
        app_or_routes_dir: OxianApp | str | os.PathLike[str],
        clock: IReactorTime | None = None,
    ) -> None:
        if isinstance(app_or_routes_dir, OxianApp):
            self.app = app_or_routes_dir
            self.clock = clock if clock is not None else self.app.clock
        else:
            self.clock = clock if clock is not None else Clock()
            self.app = OxianApp(app_or_routes_dir, reactor=self.clock)
        self._site = self.app.site()
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
    ) -> Deferred[TestResponse]:
        """
        Send a request. The Deferred fires with a `TestResponse` once the
        response head has arrived (usually at once).

        :param query: added to the path's query string.
        :param json: a body sent as ``application/json``.
        :param form: a body sent as ``application/x-www-form-urlencoded``.
        :param body: raw body bytes (set the content type in ``headers``).
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
        self._connect()
        d.addCallback(TestResponse)
        self.flush()
        return d

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
        """Deliver every byte that is ready, both ways."""
        for pump in list(self._pumps):
            pump.flush()
            if pump.clientIO.disconnected and pump.serverIO.disconnected:
                self._pumps.remove(pump)

    def advance(self, seconds: float) -> None:
        """Move the app's clock by ``seconds`` and deliver what became ready."""
        self.clock.advance(seconds)
        self.flush()

    def _connect(self) -> None:
        # Agent asked the memory reactor for a TCP connection; answer it with
        # the app's Site over in-memory transports.
        while self._network.tcpClients:
            factory = self._network.tcpClients.pop(0)[2]
            server = self._site.buildProtocol(_CLIENT)
            client = factory.buildProtocol(_SERVER)
            self._pumps.append(
                iosim.connect(
                    server,
                    iosim.FakeTransport(
                        server, isServer=True, hostAddress=_SERVER, peerAddress=_CLIENT
                    ),
                    client,
                    iosim.FakeTransport(
                        client, isServer=False, hostAddress=_CLIENT, peerAddress=_SERVER
                    ),
                    clock=self.clock,
                )
            )

"""
Tests for `oxian_tw._site`: what the site does around every request
(the short ``process``, the ``Date`` header, what a request holds).
"""

from __future__ import annotations

import gzip
import sys
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import NOT_DONE_YET, GzipEncoderFactory, Request, Site
from zope.interface import implementer

from oxian_tw import _request, _site
from oxian_tw._channel import OxianChannel
from oxian_tw._headers import FastHeaders
from oxian_tw._request import HttpDate, OxianRequest

from .helpers import RoutesTestCase

REQUEST = b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: r-1\r\n\r\n"


def exchange(site: Any, request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The status line, headers (lower-case names) and body ``site`` answers."""
    transport = StringTransport()
    channel = site.buildProtocol(None)
    channel.makeConnection(transport)
    channel.dataReceived(request)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    return status, headers, body


def unchunked(body: bytes) -> bytes:
    """A chunked body's data."""
    data = b""
    while True:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        if not length:
            return data
        data, body = data + body[:length], body[length + 2 :]


class ProcessTests(RoutesTestCase):
    """
    A site whose root is the route tree serves requests with its own short
    ``process``; what goes out is what Twisted's own ``process`` sends.
    """

    routes = {
        "hello.py": """
            def GET(data, ctx):
                return {"hello": data}
        """,
        "events.py": """
            def GET(data, ctx):
                ctx.response.sse(channels=["news"])
        """,
    }

    def test_same_as_twisteds_process(self) -> None:
        """
        Status, every header (but the ``Date`` value) and the body are those
        the same site sends through ``Request.process``. Fails when Twisted's
        ``process`` comes to send something ours does not.
        """
        site = self.app.site()
        self.assertTrue(site.routes_root)
        short = exchange(site, REQUEST)
        site.routes_root = False
        twisted = exchange(site, REQUEST)
        self.assertEqual(short[0], b"HTTP/1.1 200 OK")
        self.assertEqual(short[2], b'{"hello":{"x":"1"}}')
        self.assertEqual(short[0], twisted[0])
        self.assertEqual(short[2], twisted[2])
        self.assertEqual(set(short[1]), set(twisted[1]))
        for name in short[1]:
            # Each request has its own id (and the Date may have ticked).
            if name not in (b"date", b"x-request-id"):
                self.assertEqual(short[1][name], twisted[1][name], name)

    def test_other_roots_keep_twisteds_process(self) -> None:
        """
        A root that is not the route tree (here one that gzips) is served by
        Twisted's ``process``, encoders included.
        """

        class Text(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"x" * 100

        site = self.app.site(EncodingResourceWrapper(Text(), [GzipEncoderFactory()]))
        self.assertFalse(site.routes_root)
        _, headers, body = exchange(
            site, b"GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        self.assertEqual(headers[b"content-encoding"], b"gzip")
        self.assertEqual(gzip.decompress(unchunked(body)), b"x" * 100)

    def test_stream_request_attributes(self) -> None:
        """
        An open SSE stream's request has no instance attribute beyond those
        of a twisted.web request streaming with a producer: past 27,
        CPython stops sharing the dict's keys, and each open stream pays
        1.3 KiB more.
        """
        site = self.app.site()
        exchange(site, b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
        (sse,) = list(self.app.streams)
        ours = sse._stream._request

        peer: list[Any] = []

        class Events(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> Any:
                request.registerProducer(_Producer(), True)
                request.write(b"")
                peer.append(request)
                return NOT_DONE_YET

        exchange(Site(Events()), b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertLessEqual(set(vars(ours)), set(vars(peer[0])))

    def test_path_segments_exact(self) -> None:
        """
        An open stream's request keeps its path segments in a list of their
        size (``bytes.split`` leaves room for twelve: 88 bytes a stream).
        """
        site = self.app.site()
        exchange(site, b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
        (sse,) = list(self.app.streams)
        postpath = sse._stream._request.postpath
        self.assertEqual(postpath, [b"events"])
        self.assertEqual(sys.getsizeof(postpath), sys.getsizeof([None]))


class _CountingTransport(StringTransport):
    """Records each write, and counts the questions for its addresses."""

    def __init__(self) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "10.1.2.3", 5555),
        )
        self.writes: list[bytes] = []
        self.asked = {"host": 0, "peer": 0}

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.writes.extend(data)
        super().writeSequence(data)

    def getHost(self) -> Any:
        self.asked["host"] += 1
        return super().getHost()

    def getPeer(self) -> Any:
        self.asked["peer"] += 1
        return super().getPeer()


class ChannelTests(RoutesTestCase):
    """An `OxianSite`'s HTTP/1.1 connections are `OxianChannel`s."""

    routes = {
        "who.py": """
            def GET(data, ctx):
                return {"client": ctx.request.client, "url": ctx.request.url}
        """,
    }

    def connect(self) -> tuple[Any, _CountingTransport]:
        protocol = self.app.site().buildProtocol(None)
        transport = _CountingTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_head_in_one_write(self) -> None:
        """
        A response head is one write to the transport, byte for byte what
        Twisted's ``writeHeaders`` writes as many pieces; with the first
        bytes of its body when the request writes both at once.
        """
        protocol, transport = self.connect()
        self.assertIsInstance(protocol._inner, OxianChannel)
        protocol.dataReceived(b"GET /who HTTP/1.1\r\nHost: h\r\n\r\n")
        (response,) = transport.writes
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(body.startswith(b'{"client":'))

        headers = Headers({"Content-Type": ["text/plain"], "X-Two": ["a", "b"]})
        ours, theirs = _CountingTransport(), _CountingTransport()
        channels = ((OxianChannel(), ours), (HTTPChannel(), theirs))
        for channel, to in channels:
            channel.makeConnection(to)
            channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", headers)
        self.assertEqual(len(ours.writes), 1)
        self.assertEqual(ours.value(), theirs.value())
        # Pairs (Twisted's old form) take Twisted's own path.
        del ours.writes[:], theirs.writes[:]
        for channel, _ in channels:
            channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", [(b"A", b"b")])
        self.assertEqual(ours.writes, theirs.writes)
        self.assertEqual(ours.value(), theirs.value())

    def test_addresses_asked_once(self) -> None:
        """
        The connection's addresses are asked of the transport once (for
        TCP, ``getHost`` is a system call), not once per request; every
        request still has them.
        """
        protocol, transport = self.connect()
        for _ in range(3):
            protocol.dataReceived(b"GET /who HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(transport.asked, {"host": 1, "peer": 1})
        self.assertEqual(
            transport.value().count(b'{"client":"10.1.2.3","url":"http://h/who"}'), 3
        )
        protocol.dataReceived(b"GET /who HTTP/1.0\r\n\r\n")
        self.assertTrue(
            transport.value().endswith(b'"url":"http://127.0.0.1:8080/who"}')
        )

    def test_alpn(self) -> None:
        """
        ALPN offers ``h2`` only when the connection can switch to HTTP/2
        itself (its channel has no Twisted wrapper to do it).
        """
        site = self.app.site()
        self.patch(_site, "H2", True)
        self.assertEqual(site.acceptableProtocols(), [b"h2", b"http/1.1"])
        self.patch(_site, "H2", False)
        self.assertEqual(site.acceptableProtocols(), [b"http/1.1"])


class WholeWriteTests(SynchronousTestCase):
    """
    `OxianRequest.write_whole` (a plain response's one write) sends what
    Twisted's ``Request.write`` does, byte for byte, in one write; the
    cases it leaves to ``write`` (``HEAD``, a status without a body,
    cookies, ``Last-Modified``...) and a Twisted without the state it reads
    (`WHOLE_WRITE` false) go through ``write``.
    """

    #: (name, method, version, status, body, what is set before the write)
    CASES: Any = (
        ("plain", b"GET", b"HTTP/1.1", 200, b"hello", {}),
        ("empty", b"GET", b"HTTP/1.1", 200, b"", {}),
        ("typed", b"POST", b"HTTP/1.1", 201, b"{}", {"type": b"application/json"}),
        ("no default type", b"GET", b"HTTP/1.1", 200, b"x", {"default": None}),
        ("HTTP/1.0", b"GET", b"HTTP/1.0", 200, b"hello", {}),
        ("unknown status", b"GET", b"HTTP/1.1", 422, b"no", {}),
        ("HEAD", b"HEAD", b"HTTP/1.1", 200, b"hello", {}),
        ("no body status", b"GET", b"HTTP/1.1", 304, b"", {}),
        ("cookie", b"GET", b"HTTP/1.1", 200, b"hello", {"cookie": True}),
        ("last modified", b"GET", b"HTTP/1.1", 200, b"hello", {"modified": True}),
        ("etag", b"GET", b"HTTP/1.1", 200, b"hello", {"etag": True}),
    )

    def respond(self, case: Any, whole: bool) -> tuple[list[bytes], Any]:
        _, method, version, status, body, setup = case
        transport = _CountingTransport()
        channel = OxianChannel()
        channel.makeConnection(transport)
        request = OxianRequest(channel)
        channel.requests.append(request)
        request.method, request.clientproto = method, version
        request.setResponseCode(status)
        if "default" in setup:
            request.defaultContentType = setup["default"]
        if "type" in setup:
            request.setHeader(b"Content-Type", setup["type"])
        if setup.get("cookie"):
            request.addCookie(b"a", b"b")
        if setup.get("modified"):
            request.setLastModified(0)
        if setup.get("etag"):
            request.setETag(b"e1")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        if whole:
            request.write_whole(body)
        else:
            request.write(body)
        request.finish()
        return transport.writes, request

    def test_as_write_sends(self) -> None:
        """Each case: the same bytes and request state as ``write``."""
        for case in self.CASES:
            with self.subTest(case[0]):
                ours, request = self.respond(case, whole=True)
                theirs, reference = self.respond(case, whole=False)
                self.assertEqual(b"".join(ours), b"".join(theirs))
                self.assertEqual(
                    (request.sentLength, request.startedWriting),
                    (reference.sentLength, reference.startedWriting),
                )
                if case[0] in ("plain", "typed", "HTTP/1.0", "unknown status"):
                    self.assertEqual(len(ours), 1)

    def test_plain_write_is_its_own(self) -> None:
        """The plain case does not go through ``write`` (the point of it)."""
        self.patch(OxianRequest, "write", lambda self, data: self.fail("write"))
        writes, _ = self.respond(self.CASES[0], whole=True)
        self.assertTrue(writes[0].endswith(b"\r\n\r\nhello"))

    def test_without_twisted_state(self) -> None:
        """
        A ``Request`` without the private state read here: the check at
        import says so, and every case goes through ``write``, the same bytes.
        """
        self.patch(Request, "_inFakeHead", None)
        self.assertFalse(_request._twisted_request_state())
        self.patch(_request, "WHOLE_WRITE", False)
        calls = []
        original = OxianRequest.write

        def write(request: Any, data: bytes) -> None:
            calls.append(data)
            original(request, data)

        self.patch(OxianRequest, "write", write)
        for case in self.CASES:
            with self.subTest(case[0]):
                del calls[:]
                ours, _ = self.respond(case, whole=True)
                self.assertEqual(calls, [case[4]])
                theirs, _ = self.respond(case, whole=False)
                self.assertEqual(b"".join(ours), b"".join(theirs))

    def test_state_checked(self) -> None:
        """The installed Twisted has the state (else the fallback runs here)."""
        self.assertTrue(_request._twisted_request_state())
        self.assertTrue(_request.WHOLE_WRITE)


class RequestHeadersTests(SynchronousTestCase):
    """A request's two header sets are `FastHeaders`, however Twisted built them."""

    def test_made_fast_in_place(self) -> None:
        """Twisted's own ``Headers`` objects become `FastHeaders`."""
        channel = OxianChannel()
        channel.makeConnection(StringTransport())
        request = OxianRequest(channel)
        for headers in (request.requestHeaders, request.responseHeaders):
            self.assertIs(type(headers), FastHeaders)
            self.assertEqual(list(headers.getAllRawHeaders()), [])

    def test_another_kind(self) -> None:
        """A Twisted that builds another kind: two new `FastHeaders`."""

        class Other(Headers):
            pass

        self.patch(http, "Headers", Other)
        channel = OxianChannel()
        channel.makeConnection(StringTransport())
        request = OxianRequest(channel)
        for headers in (request.requestHeaders, request.responseHeaders):
            self.assertIs(type(headers), FastHeaders)


@implementer(IPushProducer)
class _Producer:
    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


class HttpDateTests(SynchronousTestCase):
    """`HttpDate` formats the ``Date`` value once a second."""

    def test_once_a_second(self) -> None:
        now = [0.0]
        date = HttpDate(lambda: now[0])
        first = date()
        self.assertEqual(first, b"Thu, 01 Jan 1970 00:00:00 GMT")
        self.assertEqual(first, datetimeToString(0))
        now[0] = 0.999
        self.assertIs(date(), first)
        now[0] = 1.0
        self.assertEqual(date(), b"Thu, 01 Jan 1970 00:00:01 GMT")
        now[0] = 86400 * 365.25 * 30 + 0.5
        self.assertEqual(date(), datetimeToString(int(now[0])))

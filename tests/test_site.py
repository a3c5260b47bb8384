"""
Tests for `oxian_tw._site`: what the site does around every request
(the short ``process``, the ``Date`` header, the request factory).
"""

from __future__ import annotations

import gzip
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory

from oxian_tw._site import HttpDate

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
            if name != b"date":
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

    def test_request_factory_declares_its_interface(self) -> None:
        """
        Twisted asks every request factory ``INonQueuedRequestFactory``
        before every request; the site's connections answer from their class
        (a bound method would cost ~0.7 µs a request) and build requests
        that know the connection they came on.
        """
        site = self.app.site()
        connection = site.buildProtocol(None)
        factory = connection.requestFactory
        self.assertTrue(INonQueuedRequestFactory.providedBy(factory))

        class Channel:
            transport = None

            def getPeer(self) -> None:
                return None

            def getHost(self) -> None:
                return None

        Channel.site = site  # type: ignore[attr-defined]
        self.assertIs(factory(Channel())._connection, connection)


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

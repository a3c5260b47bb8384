"""
`oxian_tw._connection`: a connection's phases, their declared transitions,
and the deadline of each waiting phase (SPEC §12.1), on a ``Clock`` over a
``StringTransport``. Deadlines here are short (1-5 s, all different) so
that each test says which one closed the connection.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import directlyProvides

from oxian_tw import OxianApp
from oxian_tw._connection import TRANSITIONS, WAITING, Phase

from . import h2frames as h2f
from .helpers import RoutesTestCase

ADDRESS = IPv4Address("TCP", "127.0.0.1", 50000)


class PhaseTests(RoutesTestCase):
    routes = {
        "hello.py": """
            def GET(data, ctx):
                return "hello"
        """,
        "events.py": """
            def GET(data, ctx):
                ctx.response.sse().send("ready")
        """,
    }
    config = {
        "tls-handshake-timeout": 1,
        "first-byte-timeout": 2,
        "header-timeout": 3,
        "keep-alive-timeout": 4,
        "h2-idle-timeout": 5,
        "ping": 0,
    }

    def connect(self, tls: bool = False) -> tuple[Any, StringTransport]:
        transport = StringTransport(peerAddress=ADDRESS)
        if tls:
            directlyProvides(transport, ISSLTransport)
            transport.negotiatedProtocol = None  # type: ignore[attr-defined]
            # ISSLTransport is an ITCPTransport: the channel sets this.
            transport.setTcpNoDelay = lambda enabled: None  # type: ignore[attr-defined]
        connection = self.app.site().buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        return connection, transport

    def test_transitions_declared_for_every_phase(self) -> None:
        """Every phase has its row; every phase but CLOSING may close."""
        self.assertEqual(set(TRANSITIONS), set(Phase))
        for phase, onward in TRANSITIONS.items():
            if phase is not Phase.CLOSING:
                self.assertIn(Phase.CLOSING, onward)
        self.assertEqual(TRANSITIONS[Phase.CLOSING], frozenset())
        self.assertNotIn(Phase.BUSY, WAITING)
        self.assertNotIn(Phase.H2_BUSY, WAITING)

    def test_undeclared_transition_refused(self) -> None:
        connection, _ = self.connect()
        self.assertRaises(ValueError, connection._move, Phase.H2_BUSY)
        self.assertEqual(connection.phase, Phase.FIRST_BYTE)

    def test_first_byte(self) -> None:
        """Nothing sent: closed after ``--first-byte-timeout``, no answer."""
        connection, transport = self.connect()
        self.assertEqual(connection.phase, Phase.FIRST_BYTE)
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(connection.phase, Phase.CLOSING)

    def test_tls_handshake(self) -> None:
        """A TLS handshake not finished: cut after ``--tls-handshake-timeout``."""
        connection, transport = self.connect(tls=True)
        self.assertEqual(connection.phase, Phase.HANDSHAKE)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected)

    def test_tls_handshake_done_then_first_byte(self) -> None:
        connection, transport = self.connect(tls=True)
        self.clock.advance(0.5)
        connection.handshakeCompleted()
        self.assertEqual(connection.phase, Phase.FIRST_BYTE)
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_head_then_keep_alive(self) -> None:
        """
        A response done: keep-alive (not the head's deadline) applies, and
        ends the connection after ``--keep-alive-timeout``.
        """
        connection, transport = self.connect()
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().endswith(b"hello"))
        self.assertEqual(connection.phase, Phase.IDLE)
        self.clock.advance(3.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_dribbled_head(self) -> None:
        """A head not complete within ``--header-timeout``: 408, closed."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /hello HTTP/1.1\r\n")
        self.assertEqual(connection.phase, Phase.HEAD)
        self.clock.advance(2.9)
        connection.dataReceived(b"X-A: 1\r\n")
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertEqual(connection.phase, Phase.CLOSING)
        # Nothing read from now on reaches the parser.
        connection.dataReceived(b"\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1"), 1)

    def test_streams_are_never_cut(self) -> None:
        """An SSE stream is BUSY: no deadline of this module applies."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(connection.phase, Phase.BUSY)
        self.clock.advance(3600)
        self.assertFalse(transport.disconnecting)

    def test_closing_lingers_then_is_cut(self) -> None:
        """A closing connection whose answer does not leave is cut after 5 s."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /hello HTTP/1.1\r\n")
        self.clock.advance(3)  # the 408
        self.assertEqual(connection.phase, Phase.CLOSING)
        self.assertFalse(transport.disconnected)
        self.clock.advance(5)
        self.assertTrue(transport.disconnected)

    def test_h2_idle(self) -> None:
        """The h2c preface and nothing else: GOAWAY(NO_ERROR) after 5 s."""
        connection, transport = self.connect()
        connection.dataReceived(h2f.opening())
        self.assertEqual(connection.phase, Phase.H2_IDLE)
        self.clock.advance(4.9)
        self.assertEqual(h2f.goaways(_frames(transport)), [])
        self.clock.advance(0.1)
        [goaway] = h2f.goaways(_frames(transport))
        self.assertEqual(goaway.error_code, 0)
        self.assertTrue(transport.disconnecting)

    def test_h2_busy_then_idle(self) -> None:
        """Open streams hold off the idle deadline; it starts when they end."""
        connection, transport = self.connect()
        frames = h2f.Frames()
        connection.dataReceived(h2f.opening() + frames.headers(1, "/events"))
        self.assertEqual(connection.phase, Phase.H2_BUSY)
        self.clock.advance(60)
        self.assertFalse(transport.disconnecting)
        connection.dataReceived(h2f.rst(1))
        self.assertEqual(connection.phase, Phase.H2_IDLE)
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)

    def test_h2_header_block(self) -> None:
        """
        HEADERS without END_HEADERS, then CONTINUATIONs trickling: GOAWAY
        once ``--header-timeout`` passes from the block's start.
        """
        connection, transport = self.connect()
        frames = h2f.Frames()
        connection.dataReceived(
            h2f.opening() + frames.headers(1, "/hello", end_headers=False)
        )
        self.assertEqual(connection.phase, Phase.H2_HEADER_BLOCK)
        for _ in range(2):
            self.clock.advance(1)
            connection.dataReceived(h2f.continuation(1, b""))
        self.clock.advance(0.9)
        self.assertEqual(h2f.goaways(_frames(transport)), [])
        self.clock.advance(0.1)
        [goaway] = h2f.goaways(_frames(transport))
        self.assertEqual(goaway.error_code, h2f.ERROR_CODES["PROTOCOL_ERROR"])

    def test_h2_header_block_completed(self) -> None:
        connection, transport = self.connect()
        frames = h2f.Frames()
        block = frames.headers(1, "/hello", end_headers=False)
        connection.dataReceived(h2f.opening() + block)
        connection.dataReceived(h2f.continuation(1, b"", end=True))
        self.clock.advance(0)
        self.assertEqual(connection.phase, Phase.H2_IDLE)
        self.assertIn(b"hello", transport.value())


class BadRequestTests(RoutesTestCase):
    """A malformed request: the JSON 400 with an id, and nothing more read."""

    routes = {"hello.py": "def GET(data, ctx):\n    return 'hello'\n"}

    def test_json_400(self) -> None:
        transport = StringTransport(peerAddress=ADDRESS)
        connection = self.app.site().buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        connection.dataReceived(
            b"GET /hello HTTP/1.1\r\nBad Header: x\r\n\r\nGET /hello HTTP/1.1\r\n\r\n"
        )
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
        self.assertIn(b"X-Request-Id: ", head)
        self.assertEqual(json.loads(body), {"error": {"message": "Malformed request"}})
        self.assertEqual(connection.phase, Phase.CLOSING)
        self.assertTrue(transport.disconnecting)

    def test_twisteds_answer_without_the_hook(self) -> None:
        """
        With `BAD_REQUEST_HOOK` false (a Twisted without the method), a
        channel class built then keeps Twisted's bare 400.
        """
        from twisted.web.http import HTTPChannel

        from oxian_tw import _channel

        self.assertTrue(_channel.BAD_REQUEST_HOOK)
        self.assertIsNot(
            _channel.OxianChannel._respondToBadRequestAndDisconnect,
            HTTPChannel._respondToBadRequestAndDisconnect,
        )
        self.patch(
            _channel.OxianChannel,
            "_respondToBadRequestAndDisconnect",
            HTTPChannel._respondToBadRequestAndDisconnect,
        )
        transport = StringTransport(peerAddress=ADDRESS)
        app = OxianApp(self.root, reactor=self.clock, config={"http-parser": "twisted"})
        connection = app.site().buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nBad Header: x\r\n\r\n")
        self.assertEqual(transport.value(), b"HTTP/1.1 400 Bad Request\r\n\r\n")


def _frames(transport: StringTransport) -> bytes:
    """What the server wrote, as frames (it writes no preface)."""
    return transport.value()


class ShutdownCutTests(RoutesTestCase):
    """
    A download still sending when the shutdown grace ends: cut, logged
    ``ended=shutdown`` (not ``client_gone``), with the bytes that left.
    """

    routes = {
        "big.py": """
            async def GET(data, ctx):
                stream = ctx.response.stream()
                for _ in range(100):
                    await stream.write(b"x" * 65536)
                    await ctx.sleep(1)
        """,
    }
    config = {"shutdown-grace": 2}

    def test_logged_as_the_shutdown(self) -> None:
        transport = StringTransport(peerAddress=ADDRESS)
        connection = self.app.site().buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        connection.dataReceived(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(0)
        self.assertTrue(transport.value())
        self.app.drain()
        self.clock.advance(2)
        self.assertTrue(transport.disconnected)
        from twisted.internet.error import ConnectionAborted
        from twisted.python.failure import Failure

        connection.connectionLost(Failure(ConnectionAborted()))
        self.clock.advance(0)
        [line] = [
            e["line"]
            for e in self.logged
            if e.get("log_namespace") == "oxian_tw.access"
        ]
        self.assertIn("ended=shutdown", line)
        self.assertIn("still sending after the shutdown grace", self.log_text())


class ForgottenTests(RoutesTestCase):
    """Closed connections leave no deadline behind (nothing keeps them)."""

    routes = {"hello.py": "def GET(data, ctx):\n    return 'hello'\n"}

    def test_closed_connection_forgotten(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        site = self.app.site()
        for _ in range(3):
            transport = StringTransport(peerAddress=ADDRESS)
            connection = site.buildProtocol(ADDRESS)
            connection.makeConnection(transport)
            connection.dataReceived(b"GET /hello HTTP/1.1\r\n")
            connection.dataReceived(b"Host: x\r\n\r\n")
            connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(site.phase_deadlines), 0)
        self.assertEqual(len(site.body_deadlines), 0)

    def test_stale_deadline_ignored(self) -> None:
        """
        A phase left without cancelling its deadline (the hot path): when
        that deadline passes, nothing happens to the connection.
        """
        site = self.app.site()
        transport = StringTransport(peerAddress=ADDRESS)
        connection = site.buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        connection.dataReceived(b"GET /hello HTTP/1.1\r\n")  # HEAD, timed
        connection.dataReceived(b"Host: x\r\n\r\n")  # BUSY, then IDLE
        self.assertEqual(connection.phase, Phase.IDLE)
        self.clock.advance(15)  # the head's deadline, left behind
        self.assertFalse(transport.disconnecting)
        self.assertEqual(connection.phase, Phase.IDLE)


class AttributeTests(RoutesTestCase):
    """What the connection answers for, and what it does not pass on."""

    routes = {"hello.py": "def GET(data, ctx):\n    return 'hello'\n"}

    def test_no_implicit_delegation(self) -> None:
        """
        No ``__getattr__``: a class with one has every attribute read go
        through it (CPython does not specialize them), 7,000 instructions
        a plain request (issue 33); the protocol's methods are its own.
        """
        from oxian_tw._connection import OxianConnection

        self.assertNotIn("__getattr__", vars(OxianConnection))
        connection = self.app.site().buildProtocol(ADDRESS)
        with self.assertRaises(AttributeError):
            connection.requests  # noqa: B018 - the channel's, not the connection's

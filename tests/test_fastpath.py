"""
``oxian_tw._fastpath``: what oxian_tw reads of Twisted's private state is
checked at import, and the framework works the same with and without it:
direct socket writes when the transport's buffer can be read, the public
``transport.writeSequence`` path otherwise.
"""

from __future__ import annotations

import select
import socket
from typing import Any

from twisted.internet import abstract, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp, _fastpath
from oxian_tw._fastpath import DirectWriter

from .helpers import make_tree


class _Socket:
    def __init__(self, accept: Any) -> None:
        self.accept = accept
        self.sent: list[list[bytes]] = []

    def sendmsg(self, parts: list[bytes]) -> int:
        if isinstance(self.accept, BaseException):
            raise self.accept
        self.sent.append(list(parts))
        return min(self.accept, sum(len(p) for p in parts))


class _Transport:
    def __init__(self, accept: Any) -> None:
        self.socket = _Socket(accept)
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.offset = 0
        self.connected = True
        self.disconnecting = False
        self.queued: list[bytes] = []

    def writeSequence(self, parts: list[bytes]) -> None:
        self.queued.extend(parts)


class ProbeTests(SynchronousTestCase):
    """The check made at import."""

    def test_installed_twisted(self) -> None:
        """The installed Twisted keeps its buffer where we read it."""
        self.assertTrue(_fastpath.DIRECT)
        self.assertTrue(_fastpath._transport_buffer_readable())

    def test_attribute_gone(self) -> None:
        """A Twisted without ``dataBuffer`` turns direct writes off."""
        self.patch(tcp.Connection, "dataBuffer", None)
        self.assertFalse(_fastpath._transport_buffer_readable())

    def test_init_changed(self) -> None:
        """A Twisted whose descriptors keep no ``_tempDataLen``: off too."""

        def init(self: Any, reactor: Any = None) -> None:
            self.reactor = reactor

        self.patch(abstract.FileDescriptor, "__init__", init)
        self.assertFalse(_fastpath._transport_buffer_readable())

    def test_off_means_no_writer(self) -> None:
        """With the check failed, no transport gets a direct writer."""
        self.patch(_fastpath, "DIRECT", False)
        left, right = tcp_pair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        connection = _Connection(left, None, MemoryReactorClock())
        self.assertIsNone(DirectWriter.for_transport(connection))

    def test_only_plain_tcp(self) -> None:
        """In-memory and other transports never get one."""
        self.assertIsNone(DirectWriter.for_transport(_Transport(10)))
        self.assertIsNone(DirectWriter.for_transport(None))


class DirectWriterTests(SynchronousTestCase):
    """The plain-TCP fast path hands the socket what it can and queues the rest."""

    def writer(self, accept: Any) -> tuple[DirectWriter, _Transport]:
        transport = _Transport(accept)
        return DirectWriter(transport), transport

    def test_whole(self) -> None:
        """Every part goes out in one ``sendmsg``; nothing is queued."""
        writer, transport = self.writer(10**9)
        self.assertTrue(writer.send([b"5\r\n", b"hello", b"\r\n"]))
        self.assertEqual(transport.socket.sent, [[b"5\r\n", b"hello", b"\r\n"]])
        self.assertEqual(transport.queued, [])

    def test_partial(self) -> None:
        """What the kernel did not take goes to the transport, in order."""
        writer, transport = self.writer(5)
        self.assertTrue(writer.send([b"5\r\n", b"hello", b"\r\n"]))
        self.assertEqual(transport.queued, [b"llo", b"\r\n"])

    def test_would_block(self) -> None:
        """A full socket: everything goes to the transport."""
        writer, transport = self.writer(BlockingIOError())
        self.assertTrue(writer.send([b"hello"]))
        self.assertEqual(transport.queued, [b"hello"])

    def test_error_left_to_transport(self) -> None:
        """A socket error is the transport's to meet: nothing is queued here."""
        writer, transport = self.writer(ConnectionResetError())
        self.assertFalse(writer.send([b"hello"]))
        self.assertEqual(transport.queued, [])

    def test_buffered_transport(self) -> None:
        """With bytes already buffered, order demands the transport's path."""
        writer, transport = self.writer(10**9)
        transport._tempDataLen = 3
        self.assertFalse(writer.send([b"hello"]))
        transport._tempDataLen = 0
        transport.dataBuffer, transport.offset = b"abc", 1
        self.assertFalse(writer.send([b"hello"]))
        self.assertEqual(transport.socket.sent, [])

    def test_turns(self) -> None:
        """After ``TURN_BYTES`` one send takes the transport's path."""
        self.patch(DirectWriter, "TURN_BYTES", 10)
        writer, transport = self.writer(10**9)
        self.assertTrue(writer.send([b"x" * 12]))
        self.assertFalse(writer.send([b"y"]))
        self.assertTrue(writer.send([b"z"]))

    def test_many_parts_joined(self) -> None:
        """Past ``MAX_PARTS`` the parts are joined into one buffer first."""
        writer, transport = self.writer(10**9)
        parts = [b"%d," % i for i in range(DirectWriter.MAX_PARTS + 1)]
        writer.send(parts)
        self.assertEqual(transport.socket.sent, [[b"".join(parts)]])


class _CountingSocket:
    """A real socket, counting ``sendmsg`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sendmsg_calls = 0

    def sendmsg(self, parts: list[bytes]) -> int:
        self.sendmsg_calls += 1
        return self._sock.sendmsg(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


ROUTES = {
    "events.py": """
        def GET(data, ctx):
            sse = ctx.response.sse()

            def burst():
                sse.send("one")
                sse.send("two")

            ctx.clock.callLater(1, burst)
    """,
}


class _Connection(tcp.Connection):
    """A server-side TCP connection on a socket connected by hand."""

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", *self.socket.getpeername())

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", *self.socket.getsockname())


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a real loopback TCP connection, made without a reactor."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


class BothWaysTests(SynchronousTestCase):
    """An SSE response over a real TCP connection, with and without the check."""

    def serve(self) -> tuple[bytes, _CountingSocket, tcp.Connection]:
        reactor = MemoryReactorClock()
        app = OxianApp(make_tree(self.mktemp(), ROUTES), reactor=reactor)
        server, client = tcp_pair()
        self.addCleanup(server.close)
        self.addCleanup(client.close)
        counting = _CountingSocket(server)
        protocol = app.site().buildProtocol(None)
        connection = _Connection(server, protocol, reactor)
        connection.socket = counting  # type: ignore[assignment]
        connection.connected = 1
        protocol.makeConnection(connection)
        protocol.dataReceived(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        reactor.advance(0)
        # A stream's head is in the transport's buffer: its doWrite sends it.
        connection.doWrite()
        # A second later, two events in one turn; then whatever the
        # transport holds, as its next doWrite would send it.
        reactor.advance(1)
        reactor.advance(0)
        connection.doWrite()
        client.setblocking(False)
        received = b""
        try:
            while chunk := client.recv(65536):
                received += chunk
        except BlockingIOError:
            pass
        return received, counting, connection

    def body(self, received: bytes) -> bytes:
        return received.partition(b"\r\n\r\n")[2]

    def test_direct(self) -> None:
        """Both events leave in one ``sendmsg``, framed as one chunk."""
        received, counting, _ = self.serve()
        self.assertEqual(self.body(received), b"16\r\ndata: one\n\ndata: two\n\n\r\n")
        self.assertEqual(counting.sendmsg_calls, 1)

    def test_public_path(self) -> None:
        """Without the check, the same bytes go through the transport."""
        self.patch(_fastpath, "DIRECT", False)
        received, counting, _ = self.serve()
        self.assertEqual(self.body(received), b"16\r\ndata: one\n\ndata: two\n\n\r\n")
        self.assertEqual(counting.sendmsg_calls, 0)


class UnsentTests(SynchronousTestCase):
    """`unsent_bytes`: what was written and has not left the socket."""

    def test_queued_and_in_the_kernel(self) -> None:
        """
        Queued in the transport, then in the kernel's send queue: unsent
        until the client has them; none once it read them all.
        """
        reactor = MemoryReactorClock()
        server, client = tcp_pair()
        self.addCleanup(server.close)
        self.addCleanup(client.close)
        # Room for all of it in the server's kernel, little in the client's.
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        connection = _Connection(server, Protocol(), reactor)
        connection.connected = 1
        self.assertEqual(_fastpath.unsent_bytes(connection), 0)
        total = 1_000_000
        connection.write(b"x" * total)
        self.assertEqual(_fastpath.unsent_bytes(connection), total)
        while connection.dataBuffer[connection.offset :] or connection._tempDataLen:
            connection.doWrite()
        # The transport holds nothing: what is unsent is in the kernel.
        self.assertGreater(_fastpath.unsent_bytes(connection), total // 2)
        client.setblocking(False)
        received = 0
        while received < total:
            try:
                received += len(client.recv(65536))
            except BlockingIOError:
                select.select([client], [], [], 5)
        self.assertEqual(_fastpath.unsent_bytes(connection), 0)

    def test_unknown_is_zero(self) -> None:
        self.patch(_fastpath, "DIRECT", False)
        self.assertEqual(_fastpath.unsent_bytes(object()), 0)


TURN_ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
    "echo.py": """
        def POST(data, ctx):
            return {"got": data}
    """,
}


class TurnWritesTests(SynchronousTestCase):
    """
    `oxian_tw._channel.OxianChannel` at the end of the turn (the app's
    `Flusher`): on plain TCP, what a connection writes in
    a reactor turn leaves when the turn ends, in one ``sendmsg``; before any
    other write to the transport and before a close.
    """

    #: ``--http-parser``.
    parser = "llhttp"

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        app = OxianApp(
            make_tree(self.mktemp(), TURN_ROUTES),
            reactor=self.reactor,
            config={"http-parser": self.parser},
        )
        server, self.client = tcp_pair()
        self.addCleanup(server.close)
        self.addCleanup(self.client.close)
        self.counting = _CountingSocket(server)
        self.protocol = app.site().buildProtocol(None)
        self.connection = _Connection(server, self.protocol, self.reactor)
        self.connection.socket = self.counting  # type: ignore[assignment]
        self.connection.connected = 1
        self.protocol.makeConnection(self.connection)

    def received(self) -> bytes:
        self.client.setblocking(False)
        received = b""
        try:
            while chunk := self.client.recv(65536):
                received += chunk
        except BlockingIOError:
            pass
        return received

    def test_when_the_turn_ends(self) -> None:
        """Two pipelined answers: nothing until the turn ends, then one send."""
        hello = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        self.protocol.dataReceived(hello * 2)
        self.assertEqual(self.counting.sendmsg_calls, 0)
        self.reactor.advance(0)
        self.assertEqual(self.counting.sendmsg_calls, 1)
        self.assertEqual(self.received().count(b"\r\n\r\nhello"), 2)

    def test_before_a_close(self) -> None:
        """An HTTP/1.0 answer is sent before the connection closes."""
        self.protocol.dataReceived(b"GET /hello HTTP/1.0\r\nHost: x\r\n\r\n")
        self.assertTrue(self.connection.disconnecting)
        self.connection.doWrite()
        self.assertTrue(self.received().endswith(b"\r\n\r\nhello"))

    def test_before_100_continue(self) -> None:
        """A pipelined answer goes before the next request's 100 Continue."""
        self.protocol.dataReceived(
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        self.connection.doWrite()
        received = self.received()
        self.assertLess(received.index(b"hello"), received.index(b"100 Continue"))

    def test_before_a_refusal(self) -> None:
        """A pipelined answer goes before a malformed request's 400."""
        self.protocol.dataReceived(
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/9.9\r\n\r\n"
        )
        self.connection.doWrite()
        received = self.received()
        self.assertLess(received.index(b"hello"), received.index(b" 400 "))


class TwistedParserTurnWritesTests(TurnWritesTests):
    """The same, with Twisted's parser."""

    parser = "twisted"

"""
HTTP/2 (SPEC §12), deterministically: the app's own site on a ``Clock``
over a ``StringTransport``, talking to a sans-I/O client built on the
``h2`` library that controls its own flow-control windows and decides when
the "socket" is read. h2c with prior knowledge, headers, bounded queues
(a client with a huge window that reads nothing), GOAWAY at shutdown,
and the fallback when the installed Twisted lacks what
`oxian_tw._h2` relies on.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import _connection, _h2

from . import h2frames as h2f
from .helpers import RoutesTestCase, h2_get

ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
    "rows.py": """
        STATE = {"written": 0}

        async def GET(data, ctx):
            stream = ctx.response.stream(headers={"Content-Type": "text/csv"})
            for n in range(int(data.get("rows", 1000))):
                await stream.write(f"{n},{n * n}\\n")
                STATE["written"] = n + 1
    """,
    "flood.py": """
        async def GET(data, ctx):
            stream = ctx.response.stream()
            for _ in range(40):
                stream.write(b"x" * 16384)  # not awaited
            await ctx.sleep(10)
    """,
    "feed.py": """
        def GET(data, ctx):
            # Cut past the budget (hub events would lag by default).
            ctx.response.sse(channels=["news"], slow_consumer="disconnect")
    """,
}

ADDRESS = IPv4Address("TCP", "127.0.0.1", 50000)


class Client:
    """A sans-I/O HTTP/2 client over the server's ``StringTransport``."""

    def __init__(
        self,
        test: H2TestCase,
        window: int | None = None,
        connection_window: int = 0,
        acknowledge: bool = False,
    ) -> None:
        self.test = test
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        if window is not None:
            self.h2.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
            self.h2.increment_flow_control_window(2**31 - 1 - 65535)
        elif connection_window:
            # Streams keep the default 64 KiB window; the connection's is wide.
            self.h2.increment_flow_control_window(connection_window)
        self.events: list[Any] = []
        self.bodies: dict[int, bytearray] = {}
        self.received: dict[int, int] = {}
        self.reading = True
        #: Reopen windows as data is read, as a browser does.
        self.acknowledge = acknowledge
        self.scheduled = 0
        call_later = test.clock.callLater

        def counting(*args: Any, **kwargs: Any) -> Any:
            # A bound on calls scheduled within one pump, so that a
            # server loop that keeps rescheduling itself fails the test
            # instead of spinning inside Clock.advance forever.
            self.scheduled += 1
            if self.scheduled > 1_000_000:
                raise AssertionError("the server keeps rescheduling itself")
            return call_later(*args, **kwargs)

        test.clock.callLater = counting  # type: ignore[method-assign]
        self.protocol = test.app.site().buildProtocol(ADDRESS)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def request(self, path: str) -> int:
        stream_id = h2_get(self.h2, path)
        self.bodies[stream_id] = bytearray()
        self.pump()
        return stream_id

    def pump(self, turns: int = 10_000) -> None:
        """Run the clock's due calls and move bytes both ways until quiet."""
        self.scheduled = 0
        for _ in range(turns):
            self.test.clock.advance(0)
            moved = False
            if self.reading:
                out = self.transport.value()
                if out:
                    self.transport.clear()
                    moved = True
                    for event in self.h2.receive_data(out):
                        self.events.append(event)
                        if isinstance(event, h2.events.DataReceived):
                            self.bodies[event.stream_id] += event.data
                            if self.acknowledge:
                                self.h2.acknowledge_received_data(
                                    event.flow_controlled_length, event.stream_id
                                )
            data = self.h2.data_to_send()
            if data:
                moved = True
                self.protocol.dataReceived(data)
            busy = any(
                c.getTime() <= self.test.clock.seconds()
                for c in self.test.clock.getDelayedCalls()
            )
            if not moved and not busy:
                return

    def of(self, kind: type, stream_id: int | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind)
            and (stream_id is None or getattr(e, "stream_id", None) == stream_id)
        ]


class H2TestCase(RoutesTestCase):
    routes = ROUTES

    def setUp(self) -> None:
        if not _h2.H2:
            self.skipTest("h2 is not installed")
        super().setUp()


class PriorKnowledgeTests(H2TestCase):
    def test_h2c(self) -> None:
        """A cleartext connection opening with the preface is HTTP/2."""
        client = Client(self)
        stream_id = client.request("/hello")
        (response,) = client.of(h2.events.ResponseReceived, stream_id)
        headers = dict(response.headers)
        self.assertEqual(headers[":status"], "200")
        self.assertIn("x-request-id", headers)
        for hop in ("connection", "transfer-encoding", "keep-alive"):
            self.assertNotIn(hop, headers)
        self.assertEqual(bytes(client.bodies[stream_id]), b"hello")
        self.assertEqual(len(client.of(h2.events.StreamEnded, stream_id)), 1)

    def test_http11_unchanged(self) -> None:
        """Anything else on the connection is HTTP/1.1."""
        protocol = self.app.site().buildProtocol(ADDRESS)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(0)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(transport.value().endswith(b"hello"))

    def test_preface_in_pieces(self) -> None:
        """A preface that arrives a few bytes at a time is still recognised."""
        client = Client(self)
        data = client.h2.data_to_send()
        for i in range(0, len(data), 5):
            client.protocol.dataReceived(data[i : i + 5])
        stream_id = client.request("/hello")
        self.assertEqual(bytes(client.bodies[stream_id]), b"hello")


class BoundsTests(H2TestCase):
    def test_many_writes_complete(self) -> None:
        """20,000 awaited small writes arrive whole and in order."""
        client = Client(self, window=2**31 - 1)
        stream_id = client.request("/rows?rows=20000")
        lines = bytes(client.bodies[stream_id]).decode().splitlines()
        self.assertEqual(len(lines), 20000)
        self.assertEqual(lines[-1], f"19999,{19999 * 19999}")

    def test_concurrent_streams_on_default_windows(self) -> None:
        """
        Six streams on the default 64 KiB windows, the client reopening
        them as it reads: the connection's window closes again and again,
        every stream waits for it, and each WINDOW_UPDATE sets the sending
        going (Twisted's loop, once every stream is blocked, waits for new
        data only), until every body is whole.
        """
        client = Client(self, acknowledge=True)
        streams = [client.request("/rows?rows=20000") for _ in range(6)]
        client.pump(1_000_000)
        for stream_id in streams:
            self.assertEqual(len(client.of(h2.events.StreamEnded, stream_id)), 1)
            lines = bytes(client.bodies[stream_id]).decode().splitlines()
            self.assertEqual(len(lines), 20000)
            self.assertEqual(lines[-1], f"19999,{19999 * 19999}")

    def test_several_frames_leave_in_one_write(self) -> None:
        """
        With room in the window, one reactor turn sends up to
        ``H2_BYTES_PER_TURN`` of frames in one transport write (Twisted
        sends one frame per turn, each in its own write).
        """
        client = Client(self, window=2**31 - 1)
        client.pump()
        writes: list[bytes] = []
        write = client.transport.write

        def recording(data: bytes) -> None:
            writes.append(data)
            write(data)

        self.patch(client.transport, "write", recording)
        stream_id = client.request("/flood")  # 40 unawaited 16 KiB writes
        self.assertEqual(len(client.bodies[stream_id]), 40 * 16384)
        with_data = [w for w in writes if len(w) > 16384]
        self.assertEqual(len(with_data), -(-40 * 16384 // _h2.H2_BYTES_PER_TURN))

    def test_a_write_costs_the_same_at_any_queue_length(self) -> None:
        """
        The room left in a stream is read from a running count, never by
        walking its queue (Twisted sums the whole queue on every write: n
        writes cost O(n²)); the count matches what is queued.
        """
        walked: list[int] = []

        def walk(queue: Any) -> Any:
            walked.append(len(queue))
            return iter(list(super(_h2._CountedQueue, queue).__iter__()))

        self.patch(_h2._CountedQueue, "__iter__", walk)
        client = Client(self, window=2**31 - 1)
        client.pump()
        client.reading = False
        client.transport.producer.pauseProducing()
        stream_id = client.request("/feed")
        connection = client.protocol._h2
        for _ in range(5000):
            connection.writeDataToStream(stream_id, b"data: x\n\n")
        queue = connection._outboundStreamQueues[stream_id]
        self.assertEqual(len(queue), 5000)
        self.assertEqual(walked, [])
        self.assertEqual(queue.size, sum(len(p) for p in queue if type(p) is bytes))
        client.reading = True
        client.transport.producer.resumeProducing()
        client.pump(1_000_000)
        self.assertEqual(queue.size, 0)
        self.assertGreaterEqual(len(client.bodies[stream_id]), 5000 * 9)

    def test_closed_window_is_not_a_busy_loop(self) -> None:
        """
        A stream whose window the client keeps closed leaves nothing
        scheduled (Twisted's loop would call itself at once, forever);
        a ``WINDOW_UPDATE`` sets it going again.
        """
        client = Client(self, connection_window=2**30)
        stream_id = client.request("/rows?rows=100000")
        self.assertEqual(len(client.bodies[stream_id]), 65535)
        due = [
            c
            for c in self.clock.getDelayedCalls()
            if c.getTime() <= self.clock.seconds()
        ]
        self.assertEqual(due, [])
        state = self.module("rows.py").STATE
        self.assertLess(state["written"], 100000)
        while not client.of(h2.events.StreamEnded, stream_id):
            got = len(client.bodies[stream_id])
            client.h2.acknowledge_received_data(got, stream_id)
            client.bodies[stream_id].clear()
            client.pump()
        self.assertEqual(state["written"], 100000)

    def test_huge_window_reading_nothing_is_bounded(self) -> None:
        """
        A client with a 2³¹−1 window whose socket is full: the connection
        is paused, the stream's queue stops at the high-water mark and the
        handler's awaited writes wait; once the client reads, all arrives.
        """
        client = Client(self, window=2**31 - 1)
        client.pump()
        client.reading = False
        client.transport.producer.pauseProducing()  # the socket is full
        stream_id = client.request("/rows?rows=200000")
        for _ in range(50):
            self.clock.advance(1)
            client.pump()
        connection = client.protocol._h2
        queued = connection._outboundStreamQueues[stream_id].size
        self.assertLessEqual(queued, _h2.H2_HIGH_WATER + 4096)
        state = self.module("rows.py").STATE
        written = state["written"]
        self.assertLess(written, 200000)
        self.clock.advance(5)
        client.pump()
        self.assertEqual(state["written"], written)
        client.reading = True
        client.transport.producer.resumeProducing()
        client.pump(1_000_000)
        self.assertEqual(state["written"], 200000)
        self.assertEqual(len(client.of(h2.events.StreamEnded, stream_id)), 1)


class LifetimeTests(H2TestCase):
    def test_heartbeat_registry_and_done(self) -> None:
        """
        An SSE stream over HTTP/2 gets its heartbeat after ``--ping``
        seconds of silence, is in the registry while open, and leaves it
        (its ``done`` fired) when the client resets the stream, while the
        connection stays up.
        """
        client = Client(self, window=2**31 - 1)
        stream_id = client.request("/feed")
        self.assertEqual(len(self.app.streams), 1)
        before = bytes(client.bodies[stream_id])
        self.clock.advance(self.app.settings.ping)
        client.pump()
        self.assertEqual(bytes(client.bodies[stream_id]), before + b":\n")
        client.h2.reset_stream(stream_id)
        client.pump()
        self.assertEqual(len(self.app.streams), 0)
        self.assertFalse(client.transport.disconnecting)
        hello = client.request("/hello")
        self.assertEqual(bytes(client.bodies[hello]), b"hello")


class PerStreamLimitTests(H2TestCase):
    config = {"buffer-limit": 256 * 1024, "sse-budget": 8192}

    def test_buffer_limit_resets_only_that_stream(self) -> None:
        """
        Unawaited writes past ``--buffer-limit`` on a stream whose window
        is closed reset that stream (``RST_STREAM``); the connection and
        its other streams go on.
        """
        client = Client(self, connection_window=2**30)
        flood = client.request("/flood")
        (reset,) = client.of(h2.events.StreamReset, flood)
        self.assertLess(len(client.bodies[flood]), 256 * 1024)
        self.assertIn("buffer limit", self.log_text())
        hello = client.request("/hello")
        self.assertEqual(bytes(client.bodies[hello]), b"hello")
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(len(self.app.streams), 0)

    def test_sse_budget_cuts_only_that_stream(self) -> None:
        """
        A subscriber whose stream window stays closed is cut at
        ``--sse-budget``; a reading subscriber on the same connection gets
        every event.
        """
        client = Client(self, connection_window=2**30)
        frozen = client.request("/feed")
        reader = client.request("/feed")
        for n in range(100):
            self.app.hub.publish("news", {"n": n, "pad": "x" * 1000})
            client.pump()
            # Only the reader's window is reopened.
            got = len(client.bodies[reader])
            if got:
                client.h2.acknowledge_received_data(got, reader)
                client.bodies[reader].clear()
                client.received[reader] = client.received.get(reader, 0) + got
        self.assertEqual(len(client.of(h2.events.StreamReset, frozen)), 1)
        self.assertEqual(client.of(h2.events.StreamReset, reader), [])
        self.assertIn("SSE client too slow", self.log_text())
        self.assertEqual(len(self.app.streams), 1)
        self.assertGreater(client.received[reader], 100 * 1000)


class BodyTimeoutTests(H2TestCase):
    def test_stalled_body_gets_408_on_its_stream(self) -> None:
        """
        A stream whose body stops for ``--body-timeout`` is answered 408
        (JSON) on that stream; the connection and its other streams go on,
        and no HTTP/1.1 head timer runs on an HTTP/2 connection.
        """
        client = Client(self)
        stream_id = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", "/hello"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                ("content-length", "10"),
            ],
        )
        client.h2.send_data(stream_id, b"xxxxx")
        client.bodies[stream_id] = bytearray()
        client.pump()
        self.clock.advance(29)
        client.pump()
        self.assertEqual(client.of(h2.events.ResponseReceived, stream_id), [])
        self.clock.advance(1)
        client.pump()
        (response,) = client.of(h2.events.ResponseReceived, stream_id)
        self.assertIn((":status", "408"), response.headers)
        self.assertEqual(
            json.loads(bytes(client.bodies[stream_id])),
            {"error": {"message": "Request body not received in time"}},
        )
        hello = client.request("/hello")
        self.assertEqual(bytes(client.bodies[hello]), b"hello")
        self.assertFalse(client.transport.disconnecting)


class ShutdownTests(H2TestCase):
    def test_goaway(self) -> None:
        """The drain sends GOAWAY and closes the connection once idle."""
        client = Client(self)
        client.request("/hello")
        drained = self.app.drain()
        client.pump()
        self.assertEqual(len(client.of(h2.events.ConnectionTerminated)), 1)
        self.assertTrue(client.transport.disconnecting)
        self.assertNoResult(drained)
        client.protocol.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(0)
        self.successResultOf(drained)


class FallbackTests(H2TestCase):
    def test_check_fails_without_the_private_parts(self) -> None:
        """`_h2_usable` is false when Twisted's HTTP/2 module lacks them."""
        self.assertTrue(_h2._h2_usable())
        self.patch(_h2, "_http2", SimpleNamespace(H2Connection=object))
        self.assertFalse(_h2._h2_usable())
        self.patch(_h2, "_http2", None)
        self.assertFalse(_h2._h2_usable())

    def test_check_fails_when_the_state_moved(self) -> None:
        """
        `_h2_usable` is false when an ``H2Connection`` no longer keeps the
        state the sending loop reads (checked on a probe instance).
        """
        original = _h2._http2.H2Connection

        class Moved(original):  # type: ignore[misc,valid-type]
            def __init__(self, reactor: Any = None) -> None:
                super().__init__(reactor)
                del self._sendingDeferred

        self.patch(_h2._http2, "H2Connection", Moved)
        self.assertFalse(_h2._h2_usable())
        self.patch(_h2._http2, "H2Connection", original)
        self.assertTrue(_h2._h2_usable())

    def test_no_sniffing_without_them(self) -> None:
        """
        Without them the preface is not sniffed: the connection is plain
        HTTP/1.1 (and ALPN does not offer h2: `tests.test_site.ChannelTests`).
        """
        self.patch(_connection, "H2", False)
        protocol = self.app.site().buildProtocol(ADDRESS)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(_h2.H2_PREFACE)
        self.clock.advance(0)
        self.assertIsNone(protocol._h2)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 4"))


def _frame_starts(data: bytes) -> list[int]:
    """Offsets where the frames after the client preface begin."""
    starts = []
    position = len(_h2.H2_PREFACE)
    while position < len(data):
        starts.append(position)
        position += 9 + int.from_bytes(data[position : position + 3], "big")
    return starts


class FrameScannerTests(SynchronousTestCase):
    """`oxian_tw._h2.FrameScanner`: frame boundaries, budgets, header blocks."""

    def setUp(self) -> None:
        frames = h2f.Frames()
        self.data = h2f.opening()
        for stream_id in range(1, 11, 2):
            self.data += frames.headers(stream_id, "/x") + h2f.rst(stream_id)
        # SETTINGS, then five HEADERS+RST_STREAM pairs.
        self.starts = _frame_starts(self.data)
        self.assertEqual(len(self.starts), 11)

    def test_whole_read_within_budget(self) -> None:
        self.assertEqual(_h2.FrameScanner().scan(self.data, 100, 1000), len(self.data))

    def test_stops_before_the_headers_past_the_budget(self) -> None:
        """
        Two HEADERS allowed: the scan ends where the third begins; the rest,
        scanned again with fresh budgets, goes on from there.
        """
        scanner = _h2.FrameScanner()
        end = scanner.scan(self.data, 2, 1000)
        self.assertEqual(end, self.starts[5])  # SETTINGS, H, R, H, R | H
        self.assertEqual(self.data[end + 3], 0x1)
        second = scanner.scan(self.data[end:], 2, 1000)
        self.assertEqual(end + second, self.starts[9])

    def test_frame_budget(self) -> None:
        scanner = _h2.FrameScanner()
        end = scanner.scan(self.data, 100, 3)
        self.assertEqual(end, self.starts[3])
        self.assertEqual(scanner.scan(self.data[end:], 100, 1000), len(self.data) - end)

    def test_any_split_gives_the_same_boundaries(self) -> None:
        """
        Reads split anywhere, even inside a frame header: with a budget of
        one HEADERS a scan, it stops at each HEADERS frame's start.
        """
        for size in (1, 2, 5, 9, 13, 64):
            with self.subTest(size=size):
                scanner = _h2.FrameScanner()
                stops = []
                position = 0
                pending = b""
                for start in range(0, len(self.data), size):
                    pending += self.data[start : start + size]
                    while pending:
                        consumed = scanner.scan(pending, 1, 1000)
                        if consumed == len(pending):
                            position += consumed
                            pending = b""
                        else:
                            position += consumed
                            pending = pending[consumed:]
                            stops.append(position)
                            # The next scan (a fresh budget) takes that one.
                            consumed = scanner.scan(pending, 1, 1000)
                            position += consumed
                            pending = pending[consumed:]
                headers = [s for s in self.starts if self.data[s + 3] == 0x1]
                # Each stop is at a HEADERS frame's header: at its start, or
                # inside it when its first bytes came in an earlier read.
                for stop in stops:
                    self.assertTrue(any(h <= stop < h + 9 for h in headers), stop)
                self.assertEqual(position, len(self.data))
                self.assertFalse(scanner.in_block)

    def test_header_block(self) -> None:
        frames = h2f.Frames()
        scanner = _h2.FrameScanner()
        scanner.scan(h2f.opening() + frames.headers(1, "/", end_headers=False), 9, 9)
        self.assertTrue(scanner.in_block)
        scanner.scan(h2f.continuation(1, b""), 9, 9)
        self.assertTrue(scanner.in_block)
        scanner.scan(h2f.continuation(1, b"", end=True), 9, 9)
        self.assertFalse(scanner.in_block)


class ResetBudgetTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        clock = Clock()
        budget = _h2.ResetBudget(clock)
        for _ in range(_h2.H2_RESET_BURST):
            self.assertTrue(budget.spend())
        self.assertFalse(budget.spend())
        clock.advance(1)
        for _ in range(_h2.H2_RESETS_PER_SECOND):
            self.assertTrue(budget.spend())
        self.assertFalse(budget.spend())

    def test_clock_stepping_back(self) -> None:
        """A wall clock stepping back neither drains nor fills the bucket."""
        clock = Clock()
        clock.advance(100)
        budget = _h2.ResetBudget(clock)
        clock.rightNow = 50
        self.assertTrue(budget.spend())


HOSTILE_ROUTES = {
    "hello.py": """
        RAN = []

        def GET(data, ctx):
            RAN.append(1)
            return "hello"
    """,
}


class ClientBoundsTests(RoutesTestCase):
    """What one HTTP/2 client can make the server do (SPEC §12)."""

    routes = HOSTILE_ROUTES

    def connect(self) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        connection = self.app.site().buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        return connection, transport

    def ran(self) -> int:
        return len(self.module("hello.py").RAN)

    def test_reset_in_the_same_read_never_runs(self) -> None:
        """HEADERS then RST_STREAM in one read: no request, no handler."""
        connection, transport = self.connect()
        frames = h2f.Frames()
        connection.dataReceived(
            h2f.opening()
            + b"".join(frames.headers(i, "/hello") for i in (1, 3, 5))
            + b"".join(h2f.rst(i) for i in (1, 3, 5))
        )
        self.clock.advance(0)
        self.assertEqual(self.ran(), 0)
        self.assertEqual(self.app.in_flight, 0)
        self.assertFalse(transport.disconnecting)

    def test_streams_parsed_per_turn(self) -> None:
        """
        50 streams in one read: 20 are started this turn, the socket is not
        read meanwhile, the rest follow on the next turns.
        """
        connection, transport = self.connect()
        frames = h2f.Frames()
        connection.dataReceived(
            h2f.opening()
            + b"".join(frames.headers(i, "/hello") for i in range(1, 101, 2))
        )
        self.assertEqual(self.ran(), _h2.H2_STREAMS_PER_TURN)
        self.assertEqual(transport.producerState, "paused")
        # The next turn's parse (a Clock runs every turn's calls at once).
        connection._h2._parse_held()
        self.assertEqual(self.ran(), 2 * _h2.H2_STREAMS_PER_TURN)
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(0)
        self.assertEqual(self.ran(), 50)
        self.assertEqual(transport.producerState, "producing")

    def test_one_goaway_then_nothing_parsed(self) -> None:
        """
        A connection error: one GOAWAY, the transport closed (its producer
        unregistered, so TLS closes too), and nothing read later parsed.
        """
        connection, transport = self.connect()
        connection.dataReceived(h2f.opening() + h2f.raw_data_on_stream_zero(b"x"))
        written = transport.value()
        self.assertEqual(len(h2f.goaways(written)), 1)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)
        frames = h2f.Frames()
        for _ in range(100):
            connection.dataReceived(frames.headers(1, "/hello") + b"junk" * 100)
        self.assertEqual(transport.value(), written)
        self.assertEqual(self.ran(), 0)

    def test_reset_budget(self) -> None:
        """
        Resets past the budget: GOAWAY(ENHANCE_YOUR_CALM), once; streams
        reset before it still cost no handler.
        """
        connection, transport = self.connect()
        frames = h2f.Frames()
        pairs = [
            frames.headers(stream_id, "/hello") + h2f.rst(stream_id)
            for stream_id in range(1, 2 * (_h2.H2_RESET_BURST + 50), 2)
        ]
        connection.dataReceived(h2f.opening())
        for start in range(0, len(pairs), 10):
            connection.dataReceived(b"".join(pairs[start : start + 10]))
            self.clock.advance(0)
        for _ in range(20):
            self.clock.advance(0)
        [goaway] = h2f.goaways(transport.value())
        self.assertEqual(goaway.error_code, h2f.ERROR_CODES["ENHANCE_YOUR_CALM"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.ran(), 0)
        self.assertIn("reset streams faster than", self.log_text())

"""
Streamed responses (SPEC §4.1–§4.3): backpressure, the buffer limit,
lifetime, disconnects, HEAD, and ``pipe``; on a deterministic clock, over
``StringTransport`` (pausing the channel as a full socket would) or the
test client's in-memory connection.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport

from oxian_tw import OxianApp

from .helpers import RoutesTestCase

ROUTES = {
    "late-header.py": """
        RAW = []

        async def GET(data, ctx):
            stream = ctx.response.stream()
            RAW.append(ctx.request.raw)
            await stream.write("first")
            await ctx.sleep(1)
            ctx.request.raw.setHeader(b"x-too-late", b"1")
            await stream.write("second")
    """,
    "chunk.py": """
        async def GET(data, ctx):
            await ctx.response.stream("héllo ")
            await ctx.response.stream(b"world")
    """,
    "empty.py": """
        async def GET(data, ctx):
            stream = ctx.response.stream()
            await stream.write(b"a")
            await ctx.sleep(1)
            await stream.write(b"")
            await stream.write("")
            await ctx.sleep(1)
            await stream.write(b"b")
    """,
    "init.py": """
        def GET(data, ctx):
            stream = ctx.response.stream(
                {"status": 201, "headers": {"Content-Type": "text/csv"}}
            )
            stream.write("a,b\\n")
    """,
    "keywords.py": """
        def GET(data, ctx):
            stream = ctx.response.stream(
                status=202, headers={"Cache-Control": "private"}
            )
            stream.write(b"x")
    """,
    "length.py": """
        def GET(data, ctx):
            n = int(data.get("n", 5))
            ctx.response.headers({"Content-Length": "5"})
            ctx.response.stream(b"x" * n)
    """,
    "steps.py": """
        from twisted.python.failure import Failure

        WRITES = []
        ORDER = []
        STREAMS = []

        def record(result, chunk):
            outcome = result.type.__name__ if isinstance(result, Failure) else result
            ORDER.append((chunk, outcome))
            return result

        async def GET(data, ctx):
            stream = ctx.response.stream()
            STREAMS.append(stream)
            WRITES.append(stream.write(b"a"))
            await ctx.sleep(1)
            for chunk in (b"b", b"c"):
                d = stream.write(chunk)
                d.addBoth(record, chunk)
                WRITES.append(d)
            await ctx.sleep(1)
    """,
    "rows.py": """
        STATE = {"written": 0}

        async def GET(data, ctx):
            stream = ctx.response.stream()
            for n in range(int(data["rows"])):
                await stream.write(b"%d\\n" % n)
                STATE["written"] = n + 1
    """,
    "flood.py": """
        EVENTS = []

        async def GET(data, ctx):
            stream = ctx.response.stream()
            stream.write(b"start")
            try:
                await ctx.sleep(1)
                for _ in range(10):
                    stream.write(b"x" * 400)
                await ctx.sleep(1)
            except BaseException as exc:
                EVENTS.append(type(exc).__name__)
                raise
            EVENTS.append("finished")
    """,
    "awaited.py": """
        EVENTS = []
        DONE = []

        async def GET(data, ctx):
            size = int(data.get("size", 1000))
            count = int(data.get("count", 10))
            stream = ctx.response.stream()
            stream.done.addCallback(lambda r: DONE.append(r))
            try:
                # Time for a test's client to stop reading after the head.
                await ctx.sleep(float(data.get("delay", 0)))
                for i in range(count):
                    ok = await stream.write(b"x" * size)
                    EVENTS.append((i, ok))
            except BaseException as exc:
                EVENTS.append(type(exc).__name__)
                raise
            EVENTS.append("finished")
    """,
    "keep.py": """
        STREAMS = []

        def GET(data, ctx):
            stream = ctx.response.stream(keep_open=True)
            STREAMS.append(stream)
            stream.write(b"open")
            return "ignored"
    """,
    "late.py": """
        async def GET(data, ctx):
            await ctx.sleep(1)
            await ctx.response.stream(b"late")
            await ctx.sleep(1)
            await ctx.response.stream(b" end")
    """,
    "boom.py": """
        async def GET(data, ctx):
            await ctx.response.stream(b"partial")
            await ctx.sleep(1)
            raise RuntimeError("after commit")
    """,
    "reuse.py": """
        async def GET(data, ctx):
            buffer = bytearray(3)
            for letter in (b"abc", b"def", b"ghi"):
                buffer[:] = letter
                ctx.response.stream(buffer)
    """,
    "view.py": """
        async def GET(data, ctx):
            await ctx.response.stream(memoryview(b"view"))
    """,
    "badchunk.py": """
        def GET(data, ctx):
            ctx.response.stream(12)
    """,
    "twice.py": """
        def GET(data, ctx):
            ctx.response.send("sent")
            ctx.response.stream(b"too late")
    """,
    "pipe_iter.py": """
        def GET(data, ctx):
            return ctx.response.pipe(["a", b"b", bytearray(b"c")])
    """,
    "pipe_async.py": """
        async def chunks(ctx):
            for word in ("one ", "two ", "three"):
                await ctx.sleep(1)
                yield word

        async def GET(data, ctx):
            await ctx.response.pipe(chunks(ctx))
    """,
    "pipe_file.py": """
        FILES = []

        async def GET(data, ctx):
            ctx.response.headers({"Content-Type": "application/octet-stream"})
            f = open(data["path"], "rb")
            FILES.append(f)
            ctx.response.stream()
            await ctx.sleep(float(data.get("delay", 0)))
            await ctx.response.pipe(f)
    """,
}


def parse(raw: bytes) -> tuple[bytes, dict[bytes, bytes], bytes, bool]:
    """
    A raw HTTP/1.1 response: ``(status line, headers, body, complete)``;
    a chunked body is decoded, and ``complete`` says whether its last
    chunk arrived.
    """
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    if headers.get(b"transfer-encoding") != b"chunked":
        return status, headers, rest, True
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return status, headers, body, True
        body, rest = body + rest[:size], rest[size + 2 :]
    return status, headers, body, False


class StreamTestCase(RoutesTestCase):
    routes = ROUTES

    def connect(
        self, request: bytes, end_turn: bool = True
    ) -> tuple[Any, StringTransport]:
        """
        The app's channel on a ``StringTransport``, fed ``request``; with
        ``end_turn``, once the reactor turn in which it was handled ended.
        """
        transport = StringTransport()
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(request)
        if end_turn:
            self.clock.advance(0)
        return channel, transport


class HeadersTests(StreamTestCase):
    """What a stream sends before its body."""

    def test_defaults(self) -> None:
        """
        ``response.stream(chunk)`` opens with the defaults: UTF-8 text,
        ``no-cache, no-transform``, ``X-Accel-Buffering: no``, chunked,
        never compressed; ``str`` chunks are UTF-8.
        """
        _, transport = self.connect(b"GET /chunk HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, complete = parse(transport.value())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], b"no-cache, no-transform")
        self.assertEqual(headers[b"x-accel-buffering"], b"no")
        self.assertEqual(headers[b"transfer-encoding"], b"chunked")
        self.assertNotIn(b"content-encoding", headers)
        self.assertEqual(body, "héllo world".encode())
        self.assertTrue(complete)

    def test_init_dict(self) -> None:
        """``stream({"status", "headers"})``: both applied, defaults kept."""
        response = self.get("/init")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.headers.get("content-type"), "text/csv")
        self.assertEqual(
            response.headers.get("cache-control"), "no-cache, no-transform"
        )
        self.assertEqual(response.body, b"a,b\n")

    def test_keywords(self) -> None:
        """``stream(status=, headers=)``; a header the handler set wins."""
        response = self.get("/keywords")
        self.assertEqual(response.code, 202)
        self.assertEqual(response.headers.get("cache-control"), "private")
        self.assertEqual(response.headers.get("x-accel-buffering"), "no")

    def test_content_length_unchunked(self) -> None:
        """With ``Content-Length`` set, the body is sent as is."""
        _, transport = self.connect(b"GET /length HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, _ = parse(transport.value())
        self.assertEqual(headers[b"content-length"], b"5")
        self.assertNotIn(b"transfer-encoding", headers)
        self.assertEqual(body, b"xxxxx")
        self.assertFalse(transport.disconnecting)

    def test_content_length_short(self) -> None:
        """
        A body shorter than its ``Content-Length`` aborts the connection
        (the client must not wait for bytes that never come).
        """
        _, transport = self.connect(b"GET /length?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.disconnecting)

    def test_content_length_long(self) -> None:
        """A write past ``Content-Length`` aborts before sending it."""
        _, transport = self.connect(b"GET /length?n=7 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"xxxxxxx", transport.value())

    def test_send_then_stream(self) -> None:
        """Opening a stream after ``send`` is an error, logged; body intact."""
        response = self.get("/twice")
        self.assertEqual(response.body, b"sent")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HeadSentTests(StreamTestCase):
    """
    Once an HTTP/1.1 stream's head is on the wire its response headers are
    released (idle streams' memory, issue 33): a header set later is not
    sent, as with Twisted, and changes nothing.
    """

    def test_released_after_the_head(self) -> None:
        from oxian_tw._producer import HEAD_SENT

        _, transport = self.connect(b"GET /late-header HTTP/1.1\r\nHost: x\r\n\r\n")
        (raw,) = self.module("late-header.py").RAW
        self.assertIs(raw.responseHeaders, HEAD_SENT)
        self.assertEqual(list(HEAD_SENT.getAllRawHeaders()), [])
        self.clock.advance(1)
        status, headers, body, complete = parse(transport.value())
        self.assertEqual(body, b"firstsecond")
        self.assertTrue(complete)
        self.assertNotIn(b"x-too-late", transport.value().lower())
        self.assertEqual(list(HEAD_SENT.getAllRawHeaders()), [])


class ChunkTests(StreamTestCase):
    """Chunks are copied and typed."""

    def test_reused_buffer(self) -> None:
        """A bytearray reused between writes never corrupts output."""
        self.assertEqual(self.get("/reuse").body, b"abcdefghi")

    def test_memoryview(self) -> None:
        """Any bytes-like value is a chunk."""
        self.assertEqual(self.get("/view").body, b"view")

    def test_empty_chunks(self) -> None:
        """
        Empty writes, alone in their turn, send nothing: an empty chunk
        would end the chunked body before ``b``.
        """
        _, transport = self.connect(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(1)
        self.clock.advance(1)
        body = transport.value().partition(b"\r\n\r\n")[2]
        self.assertEqual(body, b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n")

    def test_bad_chunk(self) -> None:
        """A chunk that is neither str nor bytes-like is a 500 before commit."""
        response = self.get("/badchunk")
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class BackpressureTests(StreamTestCase):
    """Write Deferreds follow the transport's pause and resume."""

    def test_at_once_when_keeping_up(self) -> None:
        """A write fires ``True`` at once while the client keeps up."""
        self.connect(b"GET /steps HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIs(self.successResultOf(self.module("steps.py").WRITES[0]), True)

    def test_pause_holds_resume_releases_in_order(self) -> None:
        """
        While the transport has paused the stream, writes wait and nothing
        reaches the transport; resuming sends them and fires their
        Deferreds with ``True``, in order.
        """
        channel, transport = self.connect(b"GET /steps HTTP/1.1\r\nHost: x\r\n\r\n")
        steps = self.module("steps.py")
        transport.producer.pauseProducing()
        before = transport.value()
        self.clock.advance(1)
        self.assertNoResult(steps.WRITES[1])
        self.assertNoResult(steps.WRITES[2])
        self.assertEqual(transport.value(), before)
        transport.producer.resumeProducing()
        self.assertEqual(steps.ORDER, [(b"b", True), (b"c", True)])
        self.assertEqual(parse(transport.value())[2], b"abc")

    def test_paused_by_the_write_itself(self) -> None:
        """
        A write that fills the transport past its high-water mark waits
        until the client has read; then the handler continues.
        """
        d = self.client.get("/awaited", query={"size": 70000, "count": 3})
        response = self.successResultOf(d)
        events = self.module("awaited.py").EVENTS
        self.assertEqual(events, [(0, True), (1, True), (2, True), "finished"])
        self.assertEqual(len(response.body), 210000)

    def test_awaited_writes_share_the_reactor(self) -> None:
        """
        Awaited writes that the socket takes at once resolve at once only
        up to a turn's budget; then the handler waits for the next turn,
        so that a loop of writes to a fast client never holds the
        reactor from other connections until its response ends.
        """
        from oxian_tw import _producer

        _, transport = self.connect(
            b"GET /rows?rows=10000 HTTP/1.1\r\nHost: x\r\n\r\n", end_turn=False
        )
        state = self.module("rows.py").STATE
        per_turn = _producer.TURN_BUDGET // _producer.WRITE_COST
        self.assertGreater(state["written"], per_turn // 2)
        self.assertLessEqual(state["written"], per_turn + 1)
        self.clock.advance(0)
        self.assertEqual(state["written"], 10000)
        body = parse(transport.value())[2]
        self.assertEqual(body.splitlines()[-1], b"9999")

    def test_stalled_client_stops_handler(self) -> None:
        """A client that stops reading stops an awaiting handler."""
        d = self.client.get("/awaited", query={"size": 70000, "count": 50, "delay": 1})
        response = self.successResultOf(d)
        response.stop_reading()
        self.client.advance(1)
        events = self.module("awaited.py").EVENTS
        progress = len(events)
        self.assertLess(progress, 5)
        self.client.advance(10)
        self.assertEqual(len(events), progress)
        self.assertLess(response.unread, 2 * 70000 + 1000)
        response.resume_reading()
        self.assertEqual(events[-1], "finished")
        self.assertEqual(len(response.body), 50 * 70000)
        self.assertTrue(response.complete)

    def test_false_when_closed(self) -> None:
        """A write on a closed stream fires ``False``."""
        self.connect(b"GET /steps HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(1)
        self.clock.advance(1)
        stream = self.module("steps.py").STREAMS[0]
        self.assertTrue(stream.closed)
        self.assertIs(self.successResultOf(stream.write(b"late")), False)


class BufferLimitTests(StreamTestCase):
    """Writes that are not awaited are bounded by the buffer limit."""

    config = {"buffer-limit": 1000}

    def test_abort_past_limit(self) -> None:
        """
        Past the limit the connection is aborted, the log says why, and the
        handler is cancelled.
        """
        channel, transport = self.connect(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
        transport.producer.pauseProducing()
        logged: list[dict[str, Any]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        messages = [e.get("log_format", "") for e in logged]
        self.assertTrue(
            any("client too slow; await the write" in m for m in messages), messages
        )
        self.assertEqual(self.module("flood.py").EVENTS, ["CancelledError"])
        self.assertNotIn(b"xxxx", transport.value())

    def test_under_limit_is_kept(self) -> None:
        """Under the limit, queued writes are all delivered on resume."""
        self.app = OxianApp(self.root, reactor=self.clock, config={})
        channel, transport = self.connect(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
        transport.producer.pauseProducing()
        self.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        transport.producer.resumeProducing()
        self.clock.advance(1)
        _, _, body, complete = parse(transport.value())
        self.assertEqual(body, b"start" + b"x" * 4000)
        self.assertTrue(complete)


class LifetimeTests(StreamTestCase):
    """When a stream ends (SPEC §4.3)."""

    def test_closes_when_handler_returns(self) -> None:
        """The body ends when the handler's coroutine returns."""
        response = self.get("/awaited", query={"count": 2})
        self.assertTrue(response.complete)
        self.assertEqual(self.module("awaited.py").DONE, [None])

    def test_late_open(self) -> None:
        """The rule holds for a stream opened after the handler awaited."""
        d = self.client.get("/late")
        self.assertNoResult(d)
        self.client.advance(1)
        response = self.successResultOf(d)
        self.assertEqual(response.body, b"late")
        self.assertFalse(response.complete)
        self.client.advance(1)
        self.assertEqual(response.body, b"late end")
        self.assertTrue(response.complete)

    def test_keep_open(self) -> None:
        """
        ``keep_open=True`` outlives the handler (its return value is
        ignored) until ``close()``.
        """
        response = self.get("/keep")
        self.assertEqual(response.body, b"open")
        self.assertFalse(response.complete)
        stream = self.module("keep.py").STREAMS[0]
        done = stream.done
        self.assertNoResult(done)
        self.assertIs(self.successResultOf(stream.write(" more")), True)
        stream.close()
        self.client.flush()
        self.assertEqual(response.body, b"open more")
        self.assertTrue(response.complete)
        self.assertIsNone(self.successResultOf(done))

    def test_error_after_commit(self) -> None:
        """
        A handler that raises after the stream started: the connection is
        aborted (incomplete chunked body, no error JSON), the error logged.
        """
        channel, transport = self.connect(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(1)
        _, _, body, complete = parse(transport.value())
        self.assertEqual(body, b"partial")
        self.assertFalse(complete)
        self.assertNotIn(b"error", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class DisconnectTests(StreamTestCase):
    """A client that leaves mid-stream."""

    def test_disconnect_while_waiting(self) -> None:
        """
        Pending writes fail with ``StreamClosed``, the handler stops,
        ``done`` fires, nothing is written after, nothing is logged.
        """
        channel, transport = self.connect(b"GET /steps HTTP/1.1\r\nHost: x\r\n\r\n")
        steps = self.module("steps.py")
        transport.producer.pauseProducing()
        self.clock.advance(1)
        stream = steps.STREAMS[0]
        done = stream.done
        sent = transport.value()
        # What a TCP transport does when the client leaves.
        transport.producer.stopProducing()
        channel.connectionLost(ConnectionDone())
        self.assertEqual(steps.ORDER, [(b"b", "StreamClosed"), (b"c", "StreamClosed")])
        self.assertIsNone(self.successResultOf(done))
        self.assertTrue(stream.closed)
        self.assertIs(self.successResultOf(stream.write(b"after")), False)
        self.clock.advance(5)
        self.assertEqual(transport.value(), sent)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_awaiting_handler_gets_stream_closed(self) -> None:
        """An awaiting handler sees ``StreamClosed`` at its ``await``."""
        d = self.client.get("/awaited", query={"size": 70000, "count": 50, "delay": 1})
        response = self.successResultOf(d)
        response.stop_reading()
        self.client.advance(1)
        response.disconnect()
        events = self.module("awaited.py").EVENTS
        self.assertEqual(events[-1], "StreamClosed")
        self.assertEqual(self.module("awaited.py").DONE, [None])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_done_fresh_per_access(self) -> None:
        """``done`` is a new Deferred each time; each fires; none fails."""
        response = self.get("/keep")
        stream = self.module("keep.py").STREAMS[0]
        first, second = stream.done, stream.done
        self.assertIsNot(first, second)
        first.addCallback(lambda _: 1 / 0)
        response.disconnect()
        self.failureResultOf(first, ZeroDivisionError)
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(stream.done))


class HeadTests(StreamTestCase):
    """HEAD on a streaming route."""

    def test_head_stops_handler(self) -> None:
        """Headers only; the handler is stopped as after a disconnect."""
        channel, transport = self.connect(
            b"HEAD /awaited HTTP/1.1\r\nHost: x\r\n\r\n", end_turn=False
        )
        self.assertEqual(self.module("awaited.py").EVENTS, [])
        self.clock.advance(0)
        status, headers, body, _ = parse(transport.value())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(transport.value().partition(b"\r\n\r\n")[2], b"")
        self.assertEqual(self.module("awaited.py").EVENTS, ["CancelledError"])
        self.assertEqual(self.module("awaited.py").DONE, [None])
        self.assertEqual(self.flushLoggedErrors(), [])


class PipeTests(StreamTestCase):
    """``response.pipe(source)``."""

    def test_iterable(self) -> None:
        """An iterable of chunks."""
        self.assertEqual(self.get("/pipe_iter").body, b"abc")

    def test_async_iterable(self) -> None:
        """An async iterable, at its own pace."""
        response = self.get("/pipe_async")
        self.client.advance(1)
        self.assertEqual(response.body, b"one ")
        self.client.advance(1)
        self.client.advance(1)
        self.assertEqual(response.body, b"one two three")
        self.assertTrue(response.complete)

    def test_file(self) -> None:
        """A file is streamed whole and closed."""
        path = self.mktemp()
        content = bytes(range(256)) * 2000
        with open(path, "wb") as f:
            f.write(content)
        response = self.get("/pipe_file", query={"path": path})
        self.assertEqual(response.body, content)
        self.assertTrue(response.complete)
        self.assertTrue(self.module("pipe_file.py").FILES[0].closed)

    def test_file_is_not_read_whole(self) -> None:
        """Against a stalled client the file is read only as far as sent."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"z" * (4 * 1024 * 1024))
        response = self.get("/pipe_file", query={"path": path, "delay": 1})
        response.stop_reading()
        self.client.advance(1)
        f = self.module("pipe_file.py").FILES[0]
        self.assertLess(f.tell(), 256 * 1024)
        response.resume_reading()
        self.assertEqual(len(response.body), 4 * 1024 * 1024)
        self.assertTrue(f.closed)

    def test_file_disconnect(self) -> None:
        """A client that leaves stops the pipe and closes the file."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"z" * (1024 * 1024))
        response = self.get("/pipe_file", query={"path": path, "delay": 1})
        response.stop_reading()
        self.client.advance(1)
        response.disconnect()
        self.assertTrue(self.module("pipe_file.py").FILES[0].closed)
        self.assertEqual(self.flushLoggedErrors(), [])

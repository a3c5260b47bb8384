"""
``ctx.response.sse()`` and the stream registry (SPEC §5, §6) on a
deterministic clock, through the in-memory test client: headers and wire
format, ``keep_open``, ``done``, errors before and after the stream opens,
heartbeats from one timer, the write deadline, slow-consumer policies,
``--max-streams``, ``Last-Event-ID``, ``HEAD`` and graceful shutdown.
"""

from __future__ import annotations

import gc
import json
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp, _eventstream
from oxian_tw.sse import Decoder, Event
from oxian_tw.testing import TestClient

from .helpers import RoutesTestCase, own_timers

ROUTES = {
    "basic.py": """
        STREAMS = []

        def GET(data, ctx):
            sse = ctx.response.sse(retry=1000)
            STREAMS.append(sse)
            sse.send({"n": 1, "é": "ü"}, event="counter", id="msg-1")
            sse.send("two\\nlines")
            sse.comment("hi")
    """,
    "options.py": """
        def GET(data, ctx):
            ctx.response.headers({"X-Before": "kept", "Content-Type": "text/html"})
            sse = ctx.response.sse(status=201, headers={"X-Extra": "1"})
            sse.send("x")
    """,
    "results.py": """
        RESULTS = []

        async def GET(data, ctx):
            sse = ctx.response.sse()
            RESULTS.append(await sse.send("a"))
            sse.close()
            sse.close()
            RESULTS.append(sse.closed)
            RESULTS.append(await sse.send("late"))
            RESULTS.append(await sse.comment("late"))
    """,
    "bad.py": """
        ERRORS = []

        def GET(data, ctx):
            sse = ctx.response.sse()
            for kwargs in ({"id": "a\\nb"}, {"event": "x\\ry"}, {"id": "a\\0"},
                           {"retry": -1}):
                try:
                    sse.send("x", **kwargs)
                except ValueError as exc:
                    ERRORS.append(str(exc))
            sse.send("ok")
    """,
    "closing.py": """
        def GET(data, ctx):
            sse = ctx.response.sse(keep_open=data.get("keep") != "no")
            sse.send("hello")
    """,
    "order.py": """
        ORDER = []

        def GET(data, ctx):
            sse = ctx.response.sse()
            sse.done.addCallback(lambda _: ORDER.append("done 1"))
            sse.done.addCallback(lambda _: ORDER.append("done 2"))
            sse.close()
            ORDER.append("after close")
    """,
    "lived.py": """
        STATE = {"ended": None, "done": 0}

        async def GET(data, ctx):
            sse = ctx.response.sse()
            sse.done.addCallback(lambda _: STATE.__setitem__("done", STATE["done"] + 1))
            try:
                while True:
                    await sse.send("tick")
                    await ctx.sleep(1)
            except BaseException as exc:
                STATE["ended"] = type(exc).__name__
                raise
    """,
    "errors.py": """
        from oxian_tw import HttpError

        async def GET(data, ctx):
            if data.get("when") == "before":
                raise HttpError(400, "Bad symbol", code="BAD_SYMBOL")
            sse = ctx.response.sse()
            await sse.send("first")
            await ctx.sleep(1)
            if data.get("kind") == "http":
                raise HttpError(409, "Conflict here")
            raise RuntimeError("secret detail")
    """,
    "chat.py": """
        CLIENTS = set()
        EVENTS = []

        def GET(data, ctx):
            policy = data.get("policy", "disconnect")
            sse = ctx.response.sse(slow_consumer=policy, ping=data.get("ping") and
                                   float(data["ping"]))
            client = {"sse": sse, "name": data.get("name")}
            CLIENTS.add(id(client))
            EVENTS.append(client)
            sse.done.addCallback(lambda _: CLIENTS.discard(id(client)))

        def POST(data, ctx):
            # The seed's broadcast: fire and forget over a module-level set.
            size, count = int(data.get("size", 4096)), int(data.get("count", 1))
            sent = 0
            for i in range(count):
                for client in EVENTS:
                    if id(client) in CLIENTS:
                        client["sse"].send("x" * size, id=str(i))
                        sent += 1
            return {"sent": sent, "open": len(CLIENTS)}
    """,
    "broadcast.py": """
        CLIENTS = set()

        def GET(data, ctx):
            sse = ctx.response.sse()
            CLIENTS.add(sse)
            sse.done.addCallback(lambda _: CLIENTS.discard(sse))

        def POST(data, ctx):
            size, count = int(data["size"]), int(data["count"])
            for i in range(count):
                for sse in CLIENTS:
                    sse.send("y" * size, id=str(i))
            return {"open": len(CLIENTS)}
    """,
    "awaited.py": """
        STATE = {"sent": 0, "streams": []}

        async def GET(data, ctx):
            sse = ctx.response.sse()
            STATE["streams"].append(sse)
            # Time for the test to stop reading.
            await ctx.sleep(1)
            for i in range(int(data["count"])):
                await sse.send("z" * 4096, id=str(i))
                STATE["sent"] = i + 1
            sse.close()
    """,
    "quiet.py": """
        STREAMS = []

        def GET(data, ctx):
            kwargs = {}
            if "ping" in data:
                kwargs["ping"] = None if data["ping"] == "none" else float(data["ping"])
            STREAMS.append(ctx.response.sse(**kwargs))

        def POST(data, ctx):
            for sse in STREAMS:
                sse.send("news")
    """,
    "resume.py": """
        def GET(data, ctx):
            sse = ctx.response.sse(keep_open=False)
            sse.send({"last": sse.last_event_id})
    """,
    "plain.py": """
        async def GET(data, ctx):
            await ctx.sleep(float(data.get("wait", 0)))
            return {"ok": True}
    """,
    "burst.py": """
        STREAMS = []

        def GET(data, ctx):
            sse = ctx.response.sse(ping=None)
            STREAMS.append(sse)
            ctx.clock.callLater(1, lambda: [sse.send(str(i)) for i in range(3)])
    """,
    "weak.py": """
        import weakref

        REFS = []

        def GET(data, ctx):
            sse = ctx.response.sse()
            REFS.append(weakref.ref(sse))
            sse.send("x")
    """,
}


class SSETestCase(RoutesTestCase):
    routes = ROUTES


class WireTests(SSETestCase):
    """Headers and the bytes of events."""

    def test_headers(self) -> None:
        """The SSE headers, chunked, no Content-Length, and ``retry`` at once."""
        response = self.get("/basic")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.get("content-type"), "text/event-stream; charset=utf-8"
        )
        self.assertEqual(
            response.headers.get("cache-control"), "no-cache, no-transform"
        )
        self.assertEqual(response.headers.get("x-accel-buffering"), "no")
        self.assertEqual(response.headers.get("transfer-encoding"), "chunked")
        self.assertNotIn("content-length", response.headers)
        self.assertNotIn("content-encoding", response.headers)
        # The retry line joins the first event's block (SPEC §5).
        self.assertTrue(response.body.startswith(b"retry: 1000\nid: "))

    def test_wire_format(self) -> None:
        """Events and comments byte for byte, and as a decoder sees them."""
        response = self.get("/basic")
        self.assertEqual(
            response.body,
            "retry: 1000\n"
            'id: msg-1\nevent: counter\ndata: {"n":1,"é":"ü"}\n\n'
            "data: two\ndata: lines\n\n"
            ": hi\n".encode(),
        )
        self.assertEqual(
            response.events(),
            [
                # (The opening retry: is part of the first event's block.)
                Event('{"n":1,"é":"ü"}', event="counter", id="msg-1", retry=1000),
                Event("two\nlines"),
            ],
        )
        self.assertEqual(response.retry, 1000)

    def test_options(self) -> None:
        """``status`` and ``headers`` apply; earlier headers stay, the type is SSE."""
        response = self.get("/options")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.headers.get("x-extra"), "1")
        self.assertEqual(response.headers.get("x-before"), "kept")
        self.assertEqual(
            response.headers.get("content-type"), "text/event-stream; charset=utf-8"
        )

    def test_send_results(self) -> None:
        """``True`` once written; ``close`` is idempotent; then ``False``."""
        response = self.get("/results")
        self.assertEqual(self.module("results.py").RESULTS, [True, True, False, False])
        self.assertTrue(response.complete)
        self.assertEqual(response.events(), [Event("a")])

    def test_field_injection(self) -> None:
        """Bad ``id``/``event``/``retry`` raise ``ValueError``; nothing is written."""
        response = self.get("/bad")
        self.assertEqual(len(self.module("bad.py").ERRORS), 4)
        self.assertEqual(response.body, b"data: ok\n\n")

    def test_last_event_id(self) -> None:
        """The header first, then ``lastEventId`` in the query, else ``None``."""
        both = {"headers": {"Last-Event-ID": "h-7"}, "query": {"lastEventId": "q"}}
        for kwargs, expected in (
            (both, "h-7"),
            ({"query": {"lastEventId": "q-3"}}, "q-3"),
            ({}, None),
            # EventSource sends a non-ASCII id as UTF-8.
            ({"headers": {"Last-Event-ID": "é-①"}}, "é-①"),
            # Bytes that are not UTF-8 are read as Latin-1.
            ({"headers": {"Last-Event-ID": b"\xff-1"}}, "\xff-1"),
        ):
            with self.subTest(kwargs=kwargs):
                response = self.get("/resume", **kwargs)
                data = json.loads(response.events()[0].data)
                self.assertEqual(data, {"last": expected})


class LifetimeTests(SSETestCase):
    """``keep_open``, ``close``, ``done``, disconnects, ``HEAD``."""

    def test_keep_open_default(self) -> None:
        """The stream outlives the handler, and is in the registry."""
        response = self.get("/closing")
        self.client.advance(100)
        self.assertFalse(response.complete)
        self.assertEqual(len(self.app.streams), 1)
        self.assertEqual(self.app.streams.count("/closing"), 1)
        self.assertEqual(self.app.streams.count("/basic"), 0)
        self.assertEqual([s.route for s in self.app.streams], ["/closing"])

    def test_keep_open_false(self) -> None:
        """``keep_open=False`` ends the response when the handler returns."""
        response = self.get("/closing", query={"keep": "no"})
        self.assertTrue(response.complete)
        self.assertEqual(response.events(), [Event("hello")])
        self.assertEqual(len(self.app.streams), 0)

    def test_done_not_inside_close(self) -> None:
        """``done`` callbacks run after ``close`` has returned, in order."""
        self.get("/order")
        self.assertEqual(
            self.module("order.py").ORDER, ["after close", "done 1", "done 2"]
        )

    def test_done_fresh_per_access(self) -> None:
        """Each access is a new Deferred; one listener's result affects no other."""
        self.get("/basic")
        sse = self.module("basic.py").STREAMS[0]
        first, second = sse.done, sse.done
        self.assertIsNot(first, second)
        first.addCallback(lambda _: "changed")
        sse.close()
        self.client.flush()
        self.assertEqual(self.successResultOf(first), "changed")
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(sse.done))

    def test_disconnect(self) -> None:
        """
        The client leaves: the running handler is cancelled, ``done`` fires
        once, the registry forgets the stream.
        """
        response = self.get("/lived")
        self.client.advance(3)
        self.assertEqual(len(response.events()), 4)
        response.disconnect()
        state = self.module("lived.py").STATE
        self.assertEqual(state, {"ended": "CancelledError", "done": 1})
        self.assertEqual(len(self.app.streams), 0)
        self.assertEqual(own_timers(self.clock), [])
        self.assertNotIn("Traceback", self.log_text())

    def test_memory_released(self) -> None:
        """Once a stream has ended nothing keeps it (SPEC §6.5)."""
        response = self.get("/weak")
        response.disconnect()
        self.client.flush()
        del response
        gc.collect()
        self.assertIsNone(self.module("weak.py").REFS[0]())

    def test_head(self) -> None:
        """``HEAD``: the SSE head, no body; the handler is stopped, nothing stays."""
        response = self.successResultOf(self.client.head("/lived"))
        self.assertEqual(
            response.headers.get("content-type"), "text/event-stream; charset=utf-8"
        )
        self.client.flush()
        self.assertEqual(response.body, b"")
        state = self.module("lived.py").STATE
        self.assertIn(state["ended"], ("StreamClosed", "CancelledError"))
        self.assertEqual(state["done"], 1)
        self.assertEqual(len(self.app.streams), 0)
        self.assertEqual(own_timers(self.clock), [])


class ErrorTests(SSETestCase):
    """Errors before and after ``sse()`` (SPEC §5.4)."""

    def test_before(self) -> None:
        """A normal JSON error response with its status."""
        response = self.get("/errors", query={"when": "before"})
        self.successResultOf(response.finished())
        self.assertEqual(response.code, 400)
        self.assertEqual(
            response.json(),
            {"error": {"message": "Bad symbol", "code": "BAD_SYMBOL"}},
        )

    def test_after_http_error(self) -> None:
        """One ``error`` event with the error body, then a clean end; logged."""
        response = self.get("/errors", query={"kind": "http"})
        self.client.advance(1)
        self.assertTrue(response.complete)
        self.assertEqual(
            response.events(),
            [
                Event("first"),
                Event('{"error":{"message":"Conflict here"}}', event="error"),
            ],
        )
        self.assertTrue(response.body.endswith(b"\n\n"))
        self.assertEqual(len(self.app.streams), 0)
        request_id = response.headers.get("x-request-id")
        self.assertIn(
            f"'Conflict here' raised after the SSE stream opened; sent an error "
            f"event and closed (request {request_id})",
            self.log_text(),
        )

    def test_after_unexpected_error(self) -> None:
        """A 500 body without the detail; the traceback goes to the log."""
        response = self.get("/errors")
        self.client.advance(1)
        self.assertEqual(
            response.events()[-1],
            Event('{"error":{"message":"Internal Server Error"}}', event="error"),
        )
        self.assertNotIn("secret", response.text())
        self.assertIn("Handler failed after its SSE stream opened", self.log_text())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HeartbeatTests(SSETestCase):
    """Heartbeats and the write deadline, from one timer (SPEC §5.3)."""

    def test_timing(self) -> None:
        """A silent stream gets ``:`` between 15 and 18.75 s after its last write."""
        response = self.get("/quiet")
        self.client.advance(14.9)
        self.assertEqual(response.body, b"")
        self.client.advance(18.75 - 14.9)
        self.assertEqual(response.body, b":\n")
        self.client.advance(15 * 1.25)
        self.assertEqual(response.body, b":\n:\n")

    def test_silence_counts_from_the_stream_start(self) -> None:
        """
        A stream opened long after the app started is silent from its head,
        not from the clock's epoch: no heartbeat before 15 s.
        """
        self.client.advance(1000)
        response = self.get("/quiet")
        self.client.advance(14.9)
        self.assertEqual(response.body, b"")
        self.client.advance(18.75 - 14.9)
        self.assertEqual(response.body, b":\n")

    def test_writes_postpone(self) -> None:
        """An event resets the silence: no heartbeat while events flow."""
        response = self.get("/quiet")
        for _ in range(10):
            self.client.advance(10)
            self.successResultOf(self.client.post("/quiet"))
        self.assertNotIn(b":\n", response.body.replace(b"data: news\n\n", b""))
        self.assertEqual(len(response.events()), 10)

    def test_per_stream(self) -> None:
        """``sse(ping=...)`` overrides ``--ping``; ``ping=None`` turns it off."""
        fast = self.get("/quiet", query={"ping": "2"})
        off = self.get("/quiet", query={"ping": "none"})
        default = self.get("/quiet")
        self.client.advance(20)
        self.assertGreaterEqual(fast.body.count(b":\n"), 8)
        self.assertEqual(off.body, b"")
        self.assertEqual(default.body, b":\n")

    def test_one_timer(self) -> None:
        """1,000 open streams use one timer, and heartbeat all of them."""
        responses = [self.get("/quiet") for _ in range(1000)]
        self.assertEqual(len(self.app.streams), 1000)
        self.assertEqual(len(own_timers(self.clock)), 1)
        self.client.advance(18.75)
        self.assertEqual({r.body for r in responses}, {b":\n"})
        self.assertEqual(len(own_timers(self.clock)), 1)
        for response in responses:
            response.disconnect()
        self.assertEqual(own_timers(self.clock), [])

    def test_stuck(self) -> None:
        """A stream whose buffer has not drained for 60 s is closed as stuck."""
        response = self.get("/awaited", query={"count": "1000"})
        response.stop_reading()
        self.client.advance(1)
        state = self.module("awaited.py").STATE
        sent = state["sent"]
        self.client.advance(59)
        self.assertEqual(len(self.app.streams), 1)
        self.assertEqual(state["sent"], sent)
        self.client.advance(60 / 4 + 1)
        self.assertEqual(len(self.app.streams), 0)
        self.assertTrue(response.complete)
        self.assertIn("stuck", self.log_text())

    def test_gone_unannounced(self) -> None:
        """
        A connection lost without the transport stopping its producer (not
        what TCP does, but possible): the next tick ends the stream.
        """
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET /quiet HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(0)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.app.streams), 1)
        self.clock.advance(15 / 4)
        self.assertEqual(len(self.app.streams), 0)

    def test_slow_but_moving(self) -> None:
        """A client that drains now and then is not stuck."""
        response = self.get("/chat")
        for _ in range(10):
            response.stop_reading()
            self.successResultOf(self.client.post("/chat", query={"count": 50}))
            self.client.advance(40)
            self.assertEqual(len(self.app.streams), 1)
            response.resume_reading()
        self.assertEqual(len(response.events()), 500)
        self.assertNotIn("stuck", self.log_text())


class ConfiguredHeartbeatTests(SSETestCase):
    config = {"ping": 0}

    def test_off(self) -> None:
        """``--ping 0`` turns heartbeats off for streams that do not ask."""
        response = self.get("/quiet")
        fast = self.get("/quiet", query={"ping": "1"})
        self.client.advance(100)
        self.assertEqual(response.body, b"")
        self.assertIn(b":\n", fast.body)


class SlowConsumerTests(SSETestCase):
    """The byte budget and its policies (SPEC §5.5)."""

    def broadcast(self, count: int, size: int = 4096) -> dict[str, Any]:
        response = self.successResultOf(
            self.client.post("/chat", query={"count": count, "size": size})
        )
        self.successResultOf(response.finished())
        return response.json()

    def test_disconnect(self) -> None:
        """
        Fire-and-forget sends past the 1 MiB budget disconnect the frozen
        client, inside the broadcast loop without disturbing it; the
        reading client gets every event.
        """
        frozen = self.get("/chat", query={"name": "frozen"})
        reader = self.get("/chat", query={"name": "reader"})
        frozen.stop_reading()
        clients = self.module("chat.py").CLIENTS
        results = [self.broadcast(50) for _ in range(8)]
        # The frozen client was disconnected inside a loop, but its done
        # callback had not run yet.
        self.assertIn({"sent": 100, "open": 2}, results[4:])
        self.assertEqual(len(clients), 1)
        self.assertEqual(len(self.app.streams), 1)
        self.assertEqual(
            [e.id for e in reader.events()], [str(i % 50) for i in range(400)]
        )
        self.assertIn("over the 1048576 byte budget; disconnected", self.log_text())
        frozen.resume_reading()
        self.assertTrue(frozen.complete)
        self.assertLess(len(frozen.body), 1024 * 1024 + 128 * 1024)

    def test_done_not_inside_send(self) -> None:
        """A ``done`` callback that edits the set never runs inside the loop."""
        frozen = [self.get("/broadcast") for _ in range(3)]
        for response in frozen:
            response.stop_reading()
        result = self.broadcast_plain(400)
        self.assertEqual(result, {"open": 3})
        self.client.flush()
        self.assertEqual(self.module("broadcast.py").CLIENTS, set())

    def broadcast_plain(self, count: int) -> dict[str, Any]:
        response = self.successResultOf(
            self.client.post("/broadcast", query={"count": count, "size": 4096})
        )
        self.successResultOf(response.finished())
        self.assertEqual(response.code, 200, response.text())
        return response.json()

    def test_drop(self) -> None:
        """
        Under ``"drop"`` the events past the budget are discarded and
        counted; the stream stays open and later events arrive.
        """
        frozen = self.get("/chat", query={"policy": "drop"})
        frozen.stop_reading()
        self.broadcast(400)
        sse = next(iter(self.app.streams))
        self.assertGreater(sse.dropped, 100)
        self.assertFalse(sse.closed)
        frozen.resume_reading()
        self.broadcast(1)
        received = len(frozen.events())
        self.assertEqual(received, 400 - sse.dropped + 1)
        self.assertLess(received * 4096, 1024 * 1024 + 256 * 1024)

    def test_awaited_never_over_budget(self) -> None:
        """Awaited sends wait for a frozen client, never over the budget."""
        response = self.get("/awaited", query={"count": "1000"})
        response.stop_reading()
        self.client.advance(30)
        state = self.module("awaited.py").STATE
        stream = state["streams"][0]._stream
        self.assertLess(stream._queued, 1024 * 1024)
        self.assertLess(state["sent"], 100)
        response.resume_reading()
        self.assertTrue(response.complete)
        self.assertEqual(len(response.events()), 1000)


class LimitTests(SSETestCase):
    config = {"max-streams": 2}

    def test_max_streams(self) -> None:
        """Beyond ``--max-streams``: 503 + ``Retry-After`` before any SSE header."""
        first = self.get("/quiet")
        self.get("/quiet")
        refused = self.get("/quiet")
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers.get("retry-after"), "5")
        self.assertEqual(
            refused.headers.get("content-type"), "application/json; charset=utf-8"
        )
        self.successResultOf(refused.finished())
        self.assertEqual(refused.json()["error"]["message"], "Too many open streams")
        request_id = refused.headers.get("x-request-id")
        self.assertIn(
            f"503: Too many open streams (request {request_id})", self.log_text()
        )
        first.disconnect()
        self.assertEqual(self.get("/quiet").code, 200)


class ShutdownTests(SSETestCase):
    """``app.drain()`` (what stopping the service and SIGTERM do)."""

    def test_drain(self) -> None:
        """
        Each stream gets a ``retry`` in 1–5 s and a clean end, ``done``
        fires, new SSE requests get 503, plain requests still work.
        """
        responses = [self.get("/lived") for _ in range(20)]
        self.client.advance(1)
        drained = self.app.drain()
        self.client.flush()
        self.successResultOf(drained)
        retries = {r.retry for r in responses}
        self.assertTrue(all(1000 <= r <= 5000 for r in retries), retries)
        self.assertGreater(len(retries), 1)
        self.assertTrue(all(r.complete for r in responses))
        self.assertEqual(self.module("lived.py").STATE["done"], 20)
        self.assertEqual(len(self.app.streams), 0)
        refused = self.get("/quiet")
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers.get("retry-after"), "5")
        plain = self.get("/plain")
        self.assertEqual(plain.code, 200)

    def test_grace(self) -> None:
        """A frozen client's stream is cut at the grace period; drain then fires."""
        response = self.get("/awaited", query={"count": "1000"})
        response.stop_reading()
        self.client.advance(1)
        drained = self.app.drain()
        self.client.advance(4.9)
        self.assertNoResult(drained)
        self.client.advance(0.2)
        self.successResultOf(drained)
        self.assertEqual(len(self.app.streams), 0)
        self.assertIn("still open after the shutdown grace", self.log_text())

    def test_waits_for_plain_requests(self) -> None:
        """Requests in flight finish before the drain fires."""
        plain = self.client.get("/plain", query={"wait": "2"})
        drained = self.app.drain()
        self.assertNoResult(drained)
        self.client.advance(2)
        self.successResultOf(drained)
        self.assertEqual(self.successResultOf(plain).code, 200)

    def test_service_stop(self) -> None:
        """Stopping ``app.service()`` drains the app."""
        reactor = MemoryReactorClock()
        app = OxianApp(self.root, reactor=reactor)
        client = TestClient(app)
        service = app.service(listen=["tcp:8080"])
        service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        response = self.successResultOf(client.get("/quiet"))
        stopped = service.stopService()
        client.flush()
        self.successResultOf(stopped)
        self.assertTrue(response.complete)
        self.assertIsNotNone(response.retry)


class _CountingTransport(StringTransport):
    """Counts the writes that reach the transport."""

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.writes += 1
        super().writeSequence(data)


class CoalescingTests(SSETestCase):
    """Writes to one connection in one reactor turn leave together."""

    def connect(self) -> _CountingTransport:
        transport = _CountingTransport()
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(0)
        return transport

    def test_burst_is_one_write(self) -> None:
        """Three events sent in one turn: one transport write, one chunk."""
        transport = self.connect()
        before, head = transport.writes, transport.value()
        self.clock.advance(1)
        self.assertEqual(transport.writes, before + 1)
        self.assertEqual(
            transport.value()[len(head) :],
            b"1b\r\ndata: 0\n\ndata: 1\n\ndata: 2\n\n\r\n",
        )

    def test_lone_write_leaves_this_turn(self) -> None:
        """
        One event leaves when the turn ends: from a call due now, which a
        reactor runs before it next waits for I/O.
        """
        transport = self.connect()
        sse = self.module("burst.py").STREAMS[0]
        before = transport.value()
        sse.send("alone")
        self.assertEqual(transport.value(), before)
        now = self.clock.seconds()
        self.assertIn(now, [c.getTime() for c in self.clock.getDelayedCalls()])
        self.clock.advance(0)
        self.assertTrue(transport.value().endswith(b"data: alone\n\n\r\n"))

    def test_past_high_water_sent_at_once(self) -> None:
        """More than 64 KiB held in one turn goes out without waiting for its end."""
        transport = self.connect()
        sse = self.module("burst.py").STREAMS[0]
        before = transport.writes
        sse.send("x" * 70000)
        self.assertEqual(transport.writes, before + 1)


class RegistryTests(SSETestCase):
    def test_iteration_snapshot(self) -> None:
        """Streams may end while the registry is iterated."""
        for _ in range(3):
            self.get("/quiet")
        for sse in self.app.streams:
            sse.close()
        self.client.flush()
        self.assertEqual(len(self.app.streams), 0)


class LastEventTests(SynchronousTestCase):
    """
    ``sse.send`` reuses the bytes of the last event when the same flat dict
    is sent again (the seed's broadcast loop), and only when they are exact.
    """

    def setUp(self) -> None:
        self.encoded: list[Any] = []
        real = _eventstream.encode_fields

        def counting(*args: Any) -> bytes:
            self.encoded.append(args[0])
            return real(*args)

        self.patch(_eventstream, "encode_fields", counting)
        self.last = _eventstream._LastEvent()

    def send(self, data: Any, event: str | None = "m", retry: int | None = None) -> Any:
        return Decoder().feed(self.last.encode(data, event, None, retry))[0]

    def test_same_dict_encoded_once(self) -> None:
        message = {"seq": 1, "text": "hi", "ok": True, "none": None, "x": 1.5}
        first = self.last.encode(message, "m", None, None)
        for _ in range(3):
            self.assertIs(self.last.encode(message, "m", None, None), first)
        self.assertEqual(len(self.encoded), 1)

    def test_changes_are_seen(self) -> None:
        """A new value, a changed key order, a new key, a different event."""
        message: dict[str, Any] = {"a": 1, "b": "x"}
        self.send(message)
        message["a"] = 2
        self.assertEqual(self.send(message).data, '{"a":2,"b":"x"}')
        message["a"] = True  # equal to 1, not the same JSON
        self.assertEqual(self.send(message).data, '{"a":true,"b":"x"}')
        message["a"] = -0.0
        self.send(message)
        message["a"] = 0.0  # equal to -0.0
        self.assertEqual(self.send(message).data, '{"a":0.0,"b":"x"}')
        message["a"] = message.pop("b")  # same values, other order
        self.assertEqual(self.send(message).data, '{"a":"x"}')
        message["c"] = None
        self.assertEqual(self.send(message).data, '{"a":"x","c":null}')
        self.assertEqual(self.send(message, event="other").event, "other")

    def test_nested_values_never_reused(self) -> None:
        """A dict holding a list is encoded every time: the list may change."""
        message: dict[str, Any] = {"items": [1]}
        self.send(message)
        message["items"].append(2)
        self.assertEqual(self.send(message).data, '{"items":[1,2]}')

    def test_fields_still_checked(self) -> None:
        """``retry=True`` is refused even right after ``retry=1``."""
        message = {"a": 1}
        self.send(message, retry=1)
        with self.assertRaises(ValueError):
            self.last.encode(message, "m", None, True)

    def test_other_data(self) -> None:
        """``None``, strings and lists go through as usual."""
        self.assertEqual(self.send(None).data, "null")
        self.assertEqual(self.send("a\nb").data, "a\nb")
        self.assertEqual(self.send([1]).data, "[1]")

"""
The access log (SPEC §8): one line per request when its response has
ended, in the ``combined`` or ``json`` format or none, saying how it ended;
and the sink that batches lines per reactor turn.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived

from oxian_tw import OxianApp
from oxian_tw._accesslog import ENDINGS, StreamSink
from oxian_tw.testing import TestClient

from .helpers import RoutesTestCase, make_tree

ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
    "slow.py": """
        async def GET(data, ctx):
            await ctx.sleep(1)
            return "late"
    """,
    "events.py": """
        STREAMS = []

        def GET(data, ctx):
            sse = ctx.response.sse()
            STREAMS.append(sse)
            sse.send("x")
    """,
    "flood.py": """
        async def GET(data, ctx):
            stream = ctx.response.stream()
            await ctx.sleep(1)
            for _ in range(10):
                stream.write(b"x" * 40000)
            await ctx.sleep(1)
    """,
    "boom.py": """
        async def GET(data, ctx):
            await ctx.response.stream(b"partial")
            await ctx.sleep(1)
            raise RuntimeError("after commit")
    """,
}

#: 2025-12-02T00:00:00.25Z
NOW = 1764633600.25


class AccessLogTestCase(RoutesTestCase):
    routes = ROUTES

    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(NOW)

    def lines(self) -> list[str]:
        return [
            e["line"]
            for e in self.logged
            if e.get("log_namespace") == "oxian_tw.access"
        ]


class CombinedTests(AccessLogTestCase):
    """The default format (the in-memory client is a trusted proxy here)."""

    config = {"trusted-proxy": ["127.0.0.1"]}

    def test_line(self) -> None:
        """Combined Log Format, then request id, duration and how it ended."""
        self.get("/hello", headers={"User-Agent": "curl/8", "X-Request-Id": "r-1"})
        self.assertEqual(
            self.lines(),
            [
                '127.0.0.1 - - [02/Dec/2025:00:00:00 +0000] "GET /hello HTTP/1.1" '
                '200 5 "-" "curl/8" request_id=r-1 duration_ms=0.0 ended=complete'
            ],
        )

    def test_logged_when_the_response_ends(self) -> None:
        """An asynchronous response is logged once it ends, with its duration."""
        d = self.client.get("/slow", headers={"X-Request-Id": "r-2"})
        self.assertEqual(self.lines(), [])
        self.client.advance(1)
        self.successResultOf(d)
        (line,) = self.lines()
        self.assertIn(" 200 4 ", line)
        self.assertIn("duration_ms=1000.0 ended=complete", line)

    def test_quotes_escaped(self) -> None:
        """A field with quotes or control characters cannot break the line."""
        self.get("/hello", headers={"User-Agent": 'say "hi"', "Referer": "a\\b"})
        (line,) = self.lines()
        self.assertIn(r'"a\\b" "say \"hi\""', line)

    def test_errors(self) -> None:
        """Framework answers are logged too: 404 with its body's bytes."""
        response = self.get("/nope")
        self.successResultOf(response.finished())
        (line,) = self.lines()
        self.assertIn(f'"GET /nope HTTP/1.1" 404 {len(response.body)} ', line)

    def test_client_left_before_the_answer(self) -> None:
        """A client that leaves before the response: ``client_gone``, 200 unsent."""
        response = self.client.get("/slow")
        self.assertNoResult(response)
        self.client._pumps[0].clientIO.loseConnection()
        self.client.flush()
        self.failureResultOf(response, ResponseNeverReceived)
        (line,) = self.lines()
        self.assertIn("ended=client_gone", line)


class StreamEndingTests(AccessLogTestCase):
    """A stream is logged when it ends, with how (`ENDINGS`)."""

    config = {"buffer-limit": 1000}

    def test_client_gone(self) -> None:
        response = self.get("/events")
        self.assertEqual(self.lines(), [])
        response.disconnect()
        (line,) = self.lines()
        self.assertIn('"GET /events HTTP/1.1" 200 ', line)
        self.assertIn("ended=client_gone", line)

    def test_complete(self) -> None:
        self.get("/events")
        self.module("events.py").STREAMS[0].close()
        self.client.flush()
        self.assertIn("ended=complete", self.lines()[0])

    def test_shutdown(self) -> None:
        self.get("/events")
        drained = self.app.drain()
        self.client.flush()
        self.successResultOf(drained)
        self.assertIn("ended=shutdown", self.lines()[0])

    def test_too_slow(self) -> None:
        response = self.get("/flood")
        response.stop_reading()
        self.client.advance(1)
        self.assertIn("ended=too_slow", self.lines()[0])

    def test_aborted(self) -> None:
        self.get("/boom")
        self.client.advance(1)
        self.assertIn("ended=aborted", self.lines()[0])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_every_ending_is_documented(self) -> None:
        """The endings the code uses are the ones the docs list."""
        self.assertEqual(
            set(ENDINGS),
            {"complete", "client_gone", "aborted", "too_slow", "stuck", "shutdown"},
        )


class ClientRequestIdTests(AccessLogTestCase):
    """
    A client's ``X-Request-Id`` is not the request's id (SPEC §3): ours is,
    and the client's is logged beside it.
    """

    def test_combined(self) -> None:
        response = self.get("/hello", headers={"X-Request-Id": "r-1"})
        ours = response.headers.get("x-request-id")
        self.assertNotEqual(ours, "r-1")
        (line,) = self.lines()
        self.assertIn(f"request_id={ours} ", line)
        self.assertTrue(line.endswith(" ended=complete client_request_id=r-1"), line)

    def test_json(self) -> None:
        self.app = OxianApp(
            self.root, reactor=self.clock, config={"access-log": "json"}
        )
        self.client = TestClient(self.app)
        response = self.get("/hello", headers={"X-Request-Id": "j-1"})
        (line,) = self.lines()
        logged = json.loads(line)
        self.assertEqual(logged["request_id"], response.headers.get("x-request-id"))
        self.assertEqual(logged["client_request_id"], "j-1")

    def test_insane_id_not_logged(self) -> None:
        """An id with characters outside the safe set is dropped, not logged."""
        self.get("/hello", headers={"X-Request-Id": "a b\\"})
        (line,) = self.lines()
        self.assertNotIn("client_request_id", line)


class JsonTests(AccessLogTestCase):
    config = {"access-log": "json", "trusted-proxy": ["127.0.0.1"]}

    def test_object(self) -> None:
        """One JSON object per line, with the contract's keys."""
        self.get("/hello?x=1", headers={"X-Request-Id": "j-1"})
        (line,) = self.lines()
        self.assertEqual(
            json.loads(line),
            {
                "ts": "2025-12-02T00:00:00.250Z",
                "request_id": "j-1",
                "method": "GET",
                "path": "/hello?x=1",
                "status": 200,
                "bytes": 5,
                "duration_ms": 0.0,
                "client": "127.0.0.1",
                "ended": "complete",
            },
        )

    def test_token_redacted(self) -> None:
        """A stream token in the query is not in the line's path."""
        self.get("/hello?token=secret&x=1")
        (line,) = self.lines()
        self.assertEqual(json.loads(line)["path"], "/hello?token=REDACTED&x=1")


class RedactedTests(AccessLogTestCase):
    """A stream token (``?token=``) is a credential: never logged."""

    def test_every_line(self) -> None:
        """Redacted in every line, the request line's cache's hits too."""
        for _ in range(2):
            self.get("/hello?x=1&token=secret")
        lines = self.lines()
        self.assertEqual(len(lines), 2)
        for line in lines:
            self.assertIn('"GET /hello?x=1&token=REDACTED HTTP/1.1"', line)

    def test_not_kept(self) -> None:
        """A request line with a token is not cached (the token would be)."""
        from oxian_tw import _accesslog

        self.patch(_accesslog, "_request_lines", {})
        self.get("/hello?token=secret")
        self.get("/hello")
        self.assertEqual(
            list(_accesslog._request_lines), [(b"GET", b"/hello", b"HTTP/1.1")]
        )


class OffTests(AccessLogTestCase):
    config = {"access-log": "off"}

    def test_none(self) -> None:
        self.get("/hello")
        self.get("/events").disconnect()
        self.assertEqual(self.lines(), [])


class StreamSinkTests(SynchronousTestCase):
    """Lines straight to a text stream, one write per reactor turn."""

    def setUp(self) -> None:
        self.clock = Clock()
        root = make_tree(self.mktemp(), ROUTES)
        self.app = OxianApp(root, reactor=self.clock)
        self.out = _CountingStream()
        self.app._log_requests_to(self.out)
        self.client = TestClient(self.app)

    def test_batched(self) -> None:
        """Two requests answered in one turn: one write of two lines, flushed."""
        site = self.app.site()
        for _ in range(2):
            channel = site.buildProtocol(None)
            from twisted.internet.testing import StringTransport

            channel.makeConnection(StringTransport())
            channel.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.out.writes, [])
        self.clock.advance(0)
        self.assertEqual(len(self.out.writes), 1)
        self.assertEqual(self.out.writes[0].count("\n"), 2)
        self.assertEqual(self.out.flushes, 1)

    def test_formatted_when_the_turn_ends(self) -> None:
        """A line is formatted with the turn's others, after the responses."""
        log = self.app._access_log
        formatted: list[Any] = []
        original = log.format_entries

        def format_entries(entries: list[Any]) -> str:
            formatted.extend(entries)
            return original(entries)

        log.sink.format = format_entries
        channel = self.app.site().buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", transport.value())
        self.assertEqual(formatted, [])
        self.clock.advance(0)
        self.assertEqual(len(formatted), 1)
        self.assertIn('"GET /hello HTTP/1.1" 200 5 ', self.out.writes[0])

    def test_shutdown_writes_through(self) -> None:
        """After the app's shutdown, lines are written as they come."""
        self.successResultOf(self.app.shutdown())
        self.successResultOf(self.client.get("/hello"))
        self.assertEqual(len(self.out.writes), 1)

    def test_broken_stream(self) -> None:
        """A stream that fails to write breaks no request."""
        sink = StreamSink(_Broken(), lambda item: None)
        sink.write("line")
        sink.flush()


class DurationTests(SynchronousTestCase):
    """``duration_ms`` in milliseconds to a tenth, however long."""

    def duration(self, milliseconds: float) -> str:
        from twisted.internet.address import IPv4Address

        from oxian_tw._accesslog import AccessLog

        log = AccessLog("combined", StreamSink(io.StringIO(), lambda item: None))
        entry = (NOW, milliseconds, IPv4Address("TCP", "127.0.0.1", 1))
        entry += (b"GET", b"/", b"HTTP/1.1", 200, 5, None, None, "r", "complete", None)
        (line,) = log.format_entries([entry]).splitlines()
        return line.split("duration_ms=")[1].split()[0]

    def test_tenths(self) -> None:
        self.assertEqual(self.duration(0.0), "0.0")
        self.assertEqual(self.duration(0.04), "0.0")
        self.assertEqual(self.duration(0.06), "0.1")
        self.assertEqual(self.duration(12.34), "12.3")
        self.assertEqual(self.duration(99.94), "99.9")
        self.assertEqual(self.duration(99.96), "100.0")
        self.assertEqual(self.duration(1234.56), "1234.6")

    def test_clock_went_back(self) -> None:
        """A wall clock set back between start and end: a negative duration."""
        self.assertEqual(self.duration(-0.3), "-0.3")
        self.assertEqual(self.duration(-250.0), "-250.0")


class QuotedCacheTests(SynchronousTestCase):
    """Escaped fields are kept, bounded in count and in size."""

    def test_bounded(self) -> None:
        from oxian_tw import _accesslog

        self.patch(_accesslog, "_quoted_cache", {})
        self.patch(_accesslog, "MAX_QUOTED", 2)
        self.assertEqual(_accesslog._quoted(b'say "hi"'), 'say \\"hi\\"')
        self.assertEqual(_accesslog._quoted(b"b"), "b")
        self.assertEqual(len(_accesslog._quoted_cache), 2)
        _accesslog._quoted(b"c")
        self.assertEqual(_accesslog._quoted_cache, {b"c": "c"})
        long = b"x" * (_accesslog.MAX_QUOTED_LENGTH + 1)
        self.assertEqual(_accesslog._quoted(long), long.decode())
        self.assertNotIn(long, _accesslog._quoted_cache)

    def test_request_lines_bounded(self) -> None:
        """Quoted request lines too (their three fields' sizes together)."""
        from oxian_tw import _accesslog

        self.patch(_accesslog, "_request_lines", {})
        self.patch(_accesslog, "MAX_QUOTED", 2)
        line = _accesslog._request_line
        self.assertEqual(line(b"GET", b'/"a"', b"HTTP/1.1"), 'GET /\\"a\\" HTTP/1.1')
        line(b"GET", b"/b", b"HTTP/1.1")
        self.assertEqual(len(_accesslog._request_lines), 2)
        line(b"GET", b"/c", b"HTTP/1.1")
        self.assertEqual(
            list(_accesslog._request_lines), [(b"GET", b"/c", b"HTTP/1.1")]
        )
        long = b"/" * (_accesslog.MAX_QUOTED_LENGTH - 10)
        self.assertEqual(
            line(b"GET", long, b"HTTP/1.1"), f"GET {long.decode()} HTTP/1.1"
        )
        self.assertEqual(len(_accesslog._request_lines), 1)


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        self.flushes += 1


class _Broken:
    def write(self, text: str) -> Any:
        raise OSError("broken pipe")

    def flush(self) -> None:
        pass


class TwistedParserTests(AccessLogTestCase):
    """What only Twisted's parser lets through (llhttp answers 400)."""

    config = {"trusted-proxy": ["127.0.0.1"], "http-parser": "twisted"}

    def test_control_characters_escaped(self) -> None:
        """A control character in a field is escaped in the line."""
        self.get("/hello", headers={"User-Agent": 'say "hi"\x7f'})
        (line,) = self.lines()
        self.assertIn(r'"say \"hi\"\x7f"', line)

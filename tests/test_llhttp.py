"""
HTTP/1.1 over both parsers (issue 33): `oxian_tw._llhttp.LlhttpChannel`
(llhttp, the default) and Twisted's own (``--http-parser twisted``). The
conformance rules run against each (`ConformanceTests` twice); what only
the llhttp path does (its queue of pipelined requests, its stricter
fields) and how it is chosen, apart. The app's site on a ``Clock`` over a
``StringTransport``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from zope.interface import directlyProvides

from oxian_tw import OxianApp, _llhttp, _site
from oxian_tw._channel import OxianChannel
from oxian_tw._connection import MAX_HEAD
from oxian_tw._llhttp import HELD_LIMIT, LLHTTP, MAX_QUEUED, LlhttpChannel

from .helpers import RoutesTestCase

ADDRESS = IPv4Address("TCP", "127.0.0.1", 50000)

ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
    "slow.py": """
        async def GET(data, ctx):
            await ctx.sleep(1)
            return "slow"
    """,
    "echo.py": """
        def POST(data, ctx):
            return {"got": data}

        def BREW(data, ctx):
            return "brewed"
    """,
}


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Each response's status and body, in order (bodies by length)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        status = int(status_line.split(b" ")[1])
        if status == 100:
            raw = rest
            continue
        fields = dict(line.split(b": ", 1) for line in lines)
        fields = {name.lower(): value for name, value in fields.items()}
        if b"content-length" in fields:
            size = int(fields[b"content-length"])
            found.append((status, rest[:size]))
            raw = rest[size:]
        elif fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                body, rest = body + rest[:size], rest[size + 2 :]
                if not size:
                    break
            found.append((status, body))
            raw = rest
        else:
            found.append((status, rest))
            raw = b""
    return found


class _Connected(RoutesTestCase):
    routes = ROUTES
    #: ``--http-parser``.
    parser = "llhttp"

    def setUp(self) -> None:
        self.config = {"http-parser": self.parser, "body-limit": 1000}
        super().setUp()

    def connect(self) -> tuple[Any, StringTransport]:
        transport = StringTransport(peerAddress=ADDRESS)
        # As a TCP transport is: the channel pauses and resumes its reading.
        directlyProvides(transport, IPushProducer)
        connection = self.app.site().buildProtocol(ADDRESS)
        connection.makeConnection(transport)
        return connection, transport

    def exchange(self, raw: bytes, advance: float = 0) -> tuple[bytes, StringTransport]:
        connection, transport = self.connect()
        connection.dataReceived(raw)
        if advance:
            self.clock.advance(advance)
        return transport.value(), transport


class ConformanceTests(_Connected):
    """HTTP/1.1 rules the suite checks, on the llhttp parser."""

    def test_channel(self) -> None:
        """The connection is served by the parser asked for."""
        connection, _ = self.connect()
        expected = LlhttpChannel if self.parser == "llhttp" else OxianChannel
        self.assertIs(type(connection._inner), expected)

    def test_keep_alive(self) -> None:
        """Two requests one after the other on one connection."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(
            responses(transport.value()), [(200, b"hello"), (200, b"hello")]
        )
        self.assertFalse(transport.disconnecting)

    def test_head_in_pieces(self) -> None:
        """A head that arrives a byte at a time."""
        connection, transport = self.connect()
        for byte in b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n":
            connection.dataReceived(bytes([byte]))
        self.assertEqual(responses(transport.value()), [(200, b"hello")])

    def test_pipelined_in_order(self) -> None:
        """Pipelined requests behind a slow one are answered in order."""
        raw, _ = self.exchange(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 8\r\n\r\n"
            b'{"a": 1}'
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            advance=1,
        )
        self.assertEqual(
            responses(raw),
            [(200, b"slow"), (200, b'{"got":{"a":1}}'), (200, b"hello")],
        )

    def test_pipelined_across_reads(self) -> None:
        """A request that arrives while one is handled waits for it."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /hel")
        connection.dataReceived(b"lo HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual(
            responses(transport.value()), [(200, b"slow"), (200, b"hello")]
        )

    def test_chunked_body_with_trailer(self) -> None:
        """A chunked body (with an extension and a trailer field)."""
        raw, _ = self.exchange(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b'5;ext=1\r\n{"a":\r\n2\r\n1}\r\n0\r\nX-Trailer: t\r\n\r\n'
        )
        self.assertEqual(responses(raw), [(200, b'{"got":{"a":1}}')])

    def test_expect_continue(self) -> None:
        """``Expect: 100-continue`` is answered before the body is sent."""
        connection, transport = self.connect()
        connection.dataReceived(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.dataReceived(b"{}")
        self.assertEqual(responses(transport.value()), [(200, b'{"got":{}}')])

    def test_expect_continue_over_the_limit(self) -> None:
        """A body over ``--body-limit`` is refused, never invited."""
        raw, transport = self.exchange(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        self.assertNotIn(b"100 Continue", raw)
        self.assertEqual(responses(raw)[0][0], 413)
        self.assertTrue(transport.disconnecting)

    def test_head(self) -> None:
        """HEAD: the GET's head, no body."""
        raw, _ = self.exchange(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n"), raw)

    def test_http10_closes(self) -> None:
        """An HTTP/1.0 request is answered, the connection closed after it."""
        raw, transport = self.exchange(
            b"GET /hello HTTP/1.0\r\nHost: x\r\n\r\nGET /hello HTTP/1.0\r\n\r\n"
        )
        self.assertEqual(responses(raw), [(200, b"hello")])
        self.assertTrue(transport.disconnecting)

    def test_nothing_read_after_close(self) -> None:
        """After ``Connection: close``, what follows is never served."""
        raw, transport = self.exchange(
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(responses(raw), [(200, b"hello")])
        self.assertTrue(transport.disconnecting)

    def test_any_method_token(self) -> None:
        """A method any token names (BREW) reaches the route exporting it."""
        raw, _ = self.exchange(b"BREW /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(responses(raw), [(200, b"brewed")])

    def test_upgrade_ignored(self) -> None:
        """An ``Upgrade`` request is an ordinary one; the next follows it."""
        raw, _ = self.exchange(
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(responses(raw), [(200, b"hello"), (200, b"hello")])

    def assertRefused(self, raw: bytes, status: int = 400) -> None:
        answer, transport = self.exchange(raw)
        ((got, body),) = responses(answer)
        self.assertEqual(got, status, answer)
        self.assertTrue(json.loads(body)["error"]["message"])
        self.assertIn(b"X-Request-Id: ", answer)
        self.assertTrue(transport.disconnecting)

    def test_smuggling_refused(self) -> None:
        """Ambiguous framing is a JSON 400 and the connection closes."""
        for framing in (
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            b"Content-Length: 3\r\nContent-Length: 4\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: -3\r\n",
            b"Content-Length: 0x3\r\n",
        ):
            with self.subTest(framing=framing):
                self.assertRefused(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\nabc"
                )

    def test_bad_chunk_refused(self) -> None:
        """A chunk size that is not hexadecimal."""
        self.assertRefused(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nabc\r\n0\r\n\r\n"
        )

    def test_malformed_heads_refused(self) -> None:
        """Request lines and fields that are not HTTP/1.1's."""
        for raw in (
            b"GET /\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        ):
            with self.subTest(raw=raw):
                self.assertRefused(raw)

    def test_too_many_fields_refused(self) -> None:
        """More than Twisted's 500 header fields."""
        fields = b"".join(b"X%d: 1\r\n" % i for i in range(501))
        self.assertRefused(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")

    def test_pipelined_head_over_the_limit(self) -> None:
        """A pipelined head past MAX_HEAD (read while another is handled)."""
        big = b"X: " + b"a" * 1000 + b"\r\n"
        raw, transport = self.exchange(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\n"
            + big * (MAX_HEAD // 1000 + 1)
            + b"\r\n",
            advance=1,
        )
        found = responses(raw)
        self.assertEqual(found[0], (200, b"slow"))
        self.assertIn(found[1][0], (400, 431))
        self.assertTrue(transport.disconnecting)


class TwistedParserConformanceTests(ConformanceTests):
    """The same rules, on Twisted's parser."""

    parser = "twisted"


class LlhttpTests(_Connected):
    """What only the llhttp path does."""

    def test_pipelined_unknown_method(self) -> None:
        """
        Behind another request in one read, a method llhttp does not know is
        refused in its turn: 501.
        """
        raw, transport = self.exchange(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"BREW /echo HTTP/1.1\r\nHost: x\r\n\r\n",
            advance=1,
        )
        found = responses(raw)
        self.assertEqual([status for status, _ in found], [200, 501])
        self.assertTrue(transport.disconnecting)

    def test_malformed_answered_in_turn(self) -> None:
        """A malformed request pipelined behind a slow one: 400 after it."""
        connection, transport = self.connect()
        connection.dataReceived(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/9.9\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"")
        self.clock.advance(1)
        found = responses(transport.value())
        self.assertEqual([status for status, _ in found], [200, 400])
        self.assertTrue(transport.disconnecting)

    def test_queue_bounded(self) -> None:
        """
        Past `MAX_QUEUED` requests parsed ahead, those queued are answered
        and the connection closes (the client retries the rest).
        """
        hello = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        raw, transport = self.exchange(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + hello * (MAX_QUEUED + 5),
            advance=1,
        )
        found = responses(raw)
        self.assertEqual(found, [(200, b"slow")] + [(200, b"hello")] * MAX_QUEUED)
        self.assertIn(b"Connection: close", raw.rsplit(b"HTTP/1.1 200", 1)[1])
        self.assertTrue(transport.disconnecting)

    def test_paused_by_the_transport(self) -> None:
        """
        Reading paused by the transport's full buffer between requests, and
        its resume coming while a request is handled: reading resumes once
        that request is done.
        """
        connection, transport = self.connect()
        channel = transport.producer
        channel.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        channel.resumeProducing()
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(1)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(responses(transport.value()), [(200, b"slow")])

    def test_paused_and_resumed_between_requests(self) -> None:
        """The transport's pause and resume between requests: reading goes on."""
        connection, transport = self.connect()
        transport.producer.pauseProducing()
        transport.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(responses(transport.value()), [(200, b"hello")])

    def test_reading_stops_while_handling(self) -> None:
        """Past `HELD_LIMIT` bytes held behind a request, reading pauses."""
        connection, transport = self.connect()
        connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        hello = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
        count = HELD_LIMIT // len(hello) + 1
        connection.dataReceived(hello * (count // 2))
        self.assertEqual(transport.producerState, "producing")
        connection.dataReceived(hello * (count - count // 2))
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(1)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(
            responses(transport.value()), [(200, b"slow")] + [(200, b"hello")] * count
        )

    def test_reading_left_alone(self) -> None:
        """A request handled without a pause does not resume reading."""
        connection, transport = self.connect()
        resumed: list[None] = []
        transport.resumeProducing = lambda: resumed.append(None)  # type: ignore[method-assign]
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(1)
        self.assertEqual(responses(transport.value()), [(200, b"hello")])
        self.assertEqual(resumed, [])

    def test_body_arrives_after_its_turn(self) -> None:
        """A queued request whose body is still coming goes on live."""
        connection, transport = self.connect()
        connection.dataReceived(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 8\r\n\r\n"
            b'{"a"'
        )
        self.clock.advance(1)
        connection.dataReceived(b": 1}")
        self.assertEqual(
            responses(transport.value()), [(200, b"slow"), (200, b'{"got":{"a":1}}')]
        )

    def test_reader_dropped_while_handling(self) -> None:
        """
        A connection handling a request with nothing else to read keeps no
        parser (an open stream's memory); the next request gets a new one.
        """
        connection, transport = self.connect()
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = connection._inner._reader
        self.assertIsNotNone(reader)
        connection.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(connection._inner._reader)
        self.assertIsNone(reader.parser)
        self.clock.advance(1)
        connection.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNotNone(connection._inner._reader)
        self.assertEqual(
            responses(transport.value()),
            [(200, b"hello"), (200, b"slow"), (200, b"hello")],
        )

    def test_control_characters_refused(self) -> None:
        """Field values are RFC 9110's: DEL and obsolete folding are 400s."""
        for raw in (
            b"GET /hello HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n",
            b"GET /hello HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
        ):
            with self.subTest(raw=raw):
                answer, _ = self.exchange(raw)
                self.assertEqual(responses(answer)[0][0], 400)

    def test_trailing_blanks_dropped(self) -> None:
        """A field value loses its trailing blanks, as with Twisted's parser."""
        connection, _ = self.connect()
        seen: list[Any] = []
        site = self.app.site()
        connection = site.buildProtocol(ADDRESS)
        connection.makeConnection(StringTransport(peerAddress=ADDRESS))
        inner = connection._inner
        original = inner.begin

        def begin(*args: Any) -> Any:
            request = original(*args)
            seen.append(request.requestHeaders.getRawHeaders(b"x-value"))
            return request

        inner.begin = begin
        connection.dataReceived(
            b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Value: a b \t\r\n\r\n"
        )
        self.assertEqual(seen, [[b"a b"]])


class ChoiceTests(SynchronousTestCase):
    """Which parser a site uses."""

    def test_installed_twisted_has_the_state(self) -> None:
        """The installed Twisted keeps ``_handlingRequest`` as used."""
        self.assertTrue(LLHTTP)
        self.assertTrue(_llhttp._twisted_channel_state())

    def test_other_twisted(self) -> None:
        """A Twisted whose channel no longer reads it: the check says so."""

        def pause(self: Any) -> None:
            pass

        self.patch(HTTPChannel, "pauseProducing", pause)
        self.assertFalse(_llhttp._twisted_channel_state())

    def test_other_request_done(self) -> None:
        """
        A Twisted whose ``requestDone`` no longer reads the state
        `LlhttpChannel.requestDone` keeps as it does: the check says so.
        """

        def done(self: Any, request: Any) -> None:
            del self.requests[0]
            self._handlingRequest = False
            self._networkProducer.resumeProducing()

        self.assertTrue(_llhttp._twisted_channel_state())
        self.patch(HTTPChannel, "requestDone", done)
        self.assertFalse(_llhttp._twisted_channel_state())

    def test_other_defaults(self) -> None:
        """A channel that starts with a timeout saved: the check says so."""
        self.patch(HTTPChannel, "_savedTimeOut", 5)
        self.assertFalse(_llhttp._twisted_channel_state())

    def test_fallback(self) -> None:
        """Without llhttp, a site asked for it parses with Twisted's."""
        root = self.mktemp()
        app = OxianApp(_make(root), config={"http-parser": "llhttp"})
        self.assertIs(app.site().protocol, LlhttpChannel)
        self.patch(_site, "LLHTTP", False)
        self.assertIs(app.site().protocol, OxianChannel)
        self.assertIs(
            OxianApp(_make(root + "2"), config={"http-parser": "twisted"})
            .site()
            .protocol,
            OxianChannel,
        )


def _make(root: str) -> str:
    from .helpers import make_tree

    return make_tree(root, {"hello.py": ROUTES["hello.py"]})

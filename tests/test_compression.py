"""
Compression (SPEC §17): negotiation, the encoders (every hand-on decodes
on its own: no event held back), and the app's streams, SSE and plain
responses through the in-memory client on a ``Clock``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import brotli
import zstandard
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._compression import (
    ENCODERS,
    MIN_PLAIN,
    PREFERENCE,
    compress_whole,
    compressible,
    negotiate,
)
from oxian_tw.sse import Decoder, Event

from .helpers import RoutesTestCase


class Incremental:
    """A client's decoder of one coding, fed as bytes arrive."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "gzip":
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "br":
            self._brotli = brotli.Decompressor()
        else:
            self._zstd = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> bytes:
        if self.name == "gzip":
            return self._zlib.decompress(data)
        if self.name == "br":
            return bytes(self._brotli.process(data))
        return bytes(self._zstd.decompress(data))


class NegotiateTests(SynchronousTestCase):
    def test_preference(self) -> None:
        """Equal q: the server's order, zstd, br, gzip."""
        self.assertEqual(PREFERENCE, ("zstd", "br", "gzip"))
        self.assertEqual(negotiate([b"gzip, deflate, br, zstd"]), "zstd")
        self.assertEqual(negotiate([b"gzip, deflate, br"]), "br")
        self.assertEqual(negotiate([b"gzip, deflate"]), "gzip")
        self.assertEqual(negotiate([b"gzip", b"br"]), "br")

    def test_weights(self) -> None:
        self.assertEqual(negotiate([b"br;q=0.5, gzip;q=0.9"]), "gzip")
        self.assertEqual(negotiate([b"zstd;q=0, br;q=0, gzip"]), "gzip")
        self.assertEqual(negotiate([b"*"]), "zstd")
        self.assertEqual(negotiate([b"*;q=0.1, gzip;q=0.5"]), "gzip")
        self.assertEqual(negotiate([b"GZIP ; Q=1"]), "gzip")

    def test_none(self) -> None:
        for value in [None, [], [b""], [b"identity"], [b"deflate"], [b"*;q=0"]]:
            self.assertIsNone(negotiate(value), value)
        for garbage in [b"gzip;q=x", b"gzip;q=2", b"gzip;q=-1"]:
            self.assertIsNone(negotiate([garbage]), garbage)

    def test_compressible(self) -> None:
        for yes in [
            b"text/event-stream; charset=utf-8",
            b"text/csv",
            b"application/json",
            b"application/problem+json",
            b"image/svg+xml",
            b"Application/JSON; charset=utf-8",
        ]:
            self.assertTrue(compressible(yes), yes)
        for no in [None, b"", b"image/png", b"application/octet-stream", b"video/mp4"]:
            self.assertFalse(compressible(no), no)


class EncoderTests(SynchronousTestCase):
    def test_every_piece_decodes_at_once(self) -> None:
        """What each hand-on gives decodes whole: nothing waits for more."""
        pieces = [b'data: {"price": %d, "symbol": "AAPL"}\n\n' % n for n in range(50)]
        for name, encoder_class in ENCODERS.items():
            with self.subTest(coding=name):
                encoder, decoder = encoder_class(), Incremental(name)
                for piece in pieces:
                    self.assertEqual(decoder.feed(encoder.compress(piece)), piece)
                self.assertEqual(decoder.feed(encoder.finish()), b"")
                self.assertEqual(encoder_class.name, name)
                self.assertGreater(encoder_class.memory, 0)

    def test_repeated_keys_shrink(self) -> None:
        """JSON events repeating their keys cost a fraction of their size."""
        events = b"".join(
            b'data: {"cpu": %d, "memory": %d, "streams": 4}\n\n' % (n, n * 7)
            for n in range(200)
        )
        for name in ENCODERS:
            with self.subTest(coding=name):
                self.assertLess(len(compress_whole(name, events)), len(events) / 4)


class CompressedRoutesTests(RoutesTestCase):
    routes = {
        "events.py": """
            def GET(data, ctx):
                sse = ctx.response.sse(compress=True)
                sse.send({"n": 0, "message": "hello"}, event="tick")

                def more(n):
                    sse.send({"n": n, "message": "hello"}, event="tick")
                    if n < 3:
                        ctx.clock.callLater(1, more, n + 1)
                    else:
                        sse.close()

                ctx.clock.callLater(1, more, 1)
        """,
        "plain-events.py": """
            def GET(data, ctx):
                sse = ctx.response.sse()
                sse.send({"n": 0})
                sse.close()
        """,
        "csv.py": """
            async def GET(data, ctx):
                stream = ctx.response.stream(
                    headers={"Content-Type": "text/csv"}, compress=True
                )
                for n in range(3):
                    await stream.write(f"{n},{n * n}\\n")
                    await ctx.sleep(1)
        """,
        "image.py": """
            def GET(data, ctx):
                ctx.response.stream(
                    headers={"Content-Type": "image/png"}, compress=True
                ).write(b"\\x89PNG")
                ctx.response.stream().close()
        """,
    }

    def open(self, path: str, coding: str | None, method: str = "GET") -> Any:
        headers = {} if coding is None else {"Accept-Encoding": coding}
        return self.successResultOf(self.client.request(method, path, headers=headers))

    def test_sse_event_by_event(self) -> None:
        """
        Each coding: the head says it, and every event decodes as soon as
        it has arrived, before the next is sent.
        """
        for name in ENCODERS:
            with self.subTest(coding=name):
                response = self.open("/events", name)
                self.assertEqual(response.headers.get("content-encoding"), name)
                self.assertIn("Accept-Encoding", response.headers.get("vary"))
                decoder, events = Incremental(name), Decoder()
                seen: list[Any] = []
                read = 0
                for n in range(4):
                    self.client.flush()
                    body = response.body
                    fresh, read = body[read:], len(body)
                    seen += [
                        json.loads(e.data)["n"]
                        for e in events.feed(decoder.feed(fresh))
                        if isinstance(e, Event)
                    ]
                    self.assertEqual(seen, list(range(n + 1)))
                    self.client.advance(1)
                self.successResultOf(response.finished())

    def test_identity_without_accept_encoding(self) -> None:
        response = self.open("/events", None)
        self.assertIsNone(response.headers.get("content-encoding"))
        self.client.advance(1)
        self.assertEqual(response.events()[0].event, "tick")
        response.disconnect()

    def test_off_unless_asked(self) -> None:
        """Without ``compress=True`` or ``--compress``: never compressed."""
        response = self.open("/plain-events", "gzip")
        self.successResultOf(response.finished())
        self.assertIsNone(response.headers.get("content-encoding"))
        self.assertEqual(json.loads(response.events()[0].data), {"n": 0})

    def test_stream(self) -> None:
        response = self.open("/csv", "gzip")
        self.assertEqual(response.headers.get("content-encoding"), "gzip")
        self.client.advance(1)
        self.assertEqual(Incremental("gzip").feed(response.body), b"0,0\n1,1\n")
        self.client.advance(5)
        self.successResultOf(response.finished())
        self.assertEqual(
            zlib.decompress(response.body, 16 + zlib.MAX_WBITS), b"0,0\n1,1\n2,4\n"
        )

    def test_not_worth_it(self) -> None:
        """A type that does not compress is sent as it is."""
        response = self.open("/image", "gzip")
        self.successResultOf(response.finished())
        self.assertIsNone(response.headers.get("content-encoding"))
        self.assertEqual(response.body, b"\x89PNG")

    def test_head(self) -> None:
        """``HEAD`` has no body to compress."""
        response = self.open("/events", "gzip", method="HEAD")
        self.assertIsNone(response.headers.get("content-encoding"))


class GloballyTests(RoutesTestCase):
    """``--compress``: every response of a compressible type."""

    config = {"compress": True, "sse_budget": 1024 * 1024}
    routes = {
        "big.py": """
            def GET(data, ctx):
                return {"rows": [{"id": n, "name": "row"} for n in range(200)]}
        """,
        "small.py": """
            def GET(data, ctx):
                return {"ok": True}
        """,
        "events.py": """
            def GET(data, ctx):
                ctx.response.sse(keep_open=False).send({"n": 1})
        """,
        "opted-out.py": """
            def GET(data, ctx):
                ctx.response.sse(keep_open=False, compress=False).send({"n": 1})
        """,
        "file.py": """
            import os

            def GET(data, ctx):
                return ctx.response.send_file("file.py", os.path.dirname(__file__))
        """,
    }

    def get_with(self, path: str, coding: str, **headers: str) -> Any:
        response = self.successResultOf(
            self.client.get(path, headers={"Accept-Encoding": coding, **headers})
        )
        self.successResultOf(response.finished())
        return response

    def test_plain_from_1_kib(self) -> None:
        big = self.get_with("/big", "br")
        self.assertEqual(big.headers.get("content-encoding"), "br")
        self.assertEqual(big.headers.get("vary"), "Accept-Encoding")
        original = brotli.decompress(big.body)
        self.assertGreaterEqual(len(original), MIN_PLAIN)
        self.assertEqual(len(json.loads(original)["rows"]), 200)
        self.assertEqual(int(big.headers.get("content-length")), len(big.body))
        small = self.get_with("/small", "br")
        self.assertIsNone(small.headers.get("content-encoding"))
        self.assertEqual(small.json(), {"ok": True})

    def test_sse_and_opt_out(self) -> None:
        events = self.get_with("/events", "gzip")
        self.assertEqual(events.headers.get("content-encoding"), "gzip")
        self.assertIn(b'data: {"n":1}', zlib.decompress(events.body, 31))
        opted_out = self.get_with("/opted-out", "gzip")
        self.assertIsNone(opted_out.headers.get("content-encoding"))

    def test_files_never(self) -> None:
        """``send_file`` (whole or a range) keeps its bytes and length."""
        whole = self.get_with("/file", "gzip")
        part = self.get_with("/file", "gzip", Range="bytes=0-9")
        self.assertEqual(part.code, 206)
        for response in (whole, part):
            self.assertIsNone(response.headers.get("content-encoding"))
        self.assertEqual(part.body, whole.body[:10])

    def test_budget_counts_the_compressor(self) -> None:
        """The compressor's memory is taken off the stream's budget."""
        from oxian_tw._compression import GzipEncoder

        seen: list[int] = []
        original = self.app.streams.add

        def add(sse: Any) -> None:
            seen.append(sse._budget)
            original(sse)

        self.app.streams.add = add  # type: ignore[method-assign]
        self.get_with("/events", "gzip")
        self.get_with("/events", "identity")
        self.assertEqual(seen, [1024 * 1024 - GzipEncoder.memory, 1024 * 1024])

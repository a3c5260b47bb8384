"""The RESP3 codec of the hub's Redis client: every reply type, however split."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.hub._resp import (
    ProtocolError,
    Push,
    RespError,
    RespParser,
    encode_command,
)

# One reply of each kind Redis sends the hub, and what it parses to.
REPLIES: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", b"OK"),
    (b"-NOSCRIPT No matching script\r\n", RespError("NOSCRIPT No matching script")),
    (b":-42\r\n", -42),
    (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"_\r\n", None),
    (b"#t\r\n", True),
    (b"#f\r\n", False),
    (b",1.5\r\n", 1.5),
    (b"=15\r\ntxt:Some string\r\n", b"Some string"),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n", [[1], b"x"]),
    (b"~2\r\n+a\r\n+b\r\n", [b"a", b"b"]),
    (
        b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n+proto\r\n:3\r\n",
        {b"server": b"redis", b"proto": 3},
    ),
    (
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        Push([b"message", b"ch", b"hi"]),
    ),
]
STREAM = b"".join(wire for wire, _ in REPLIES)


def _same(test: SynchronousTestCase, got: list[Any], expected: list[Any]) -> None:
    test.assertEqual(len(got), len(expected))
    for g, e in zip(got, expected, strict=True):
        test.assertEqual(type(g), type(e))
        if isinstance(e, RespError):
            test.assertEqual(str(g), str(e))
        else:
            test.assertEqual(g, e)


class ParserTests(SynchronousTestCase):
    def test_every_type_at_once(self) -> None:
        """A buffer holding every reply type parses to each value, in order."""
        _same(self, RespParser().feed(STREAM), [value for _, value in REPLIES])

    def test_one_byte_at_a_time(self) -> None:
        """Split anywhere, even inside a CRLF, the replies are the same."""
        parser, got = RespParser(), []
        for i in range(len(STREAM)):
            got += parser.feed(STREAM[i : i + 1])
        _same(self, got, [value for _, value in REPLIES])

    @given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
    def test_any_split(self, cuts: list[int]) -> None:
        parser, got, start = RespParser(), [], 0
        for cut in sorted(cuts) + [len(STREAM)]:
            got += parser.feed(STREAM[start:cut])
            start = cut
        _same(self, got, [value for _, value in REPLIES])

    def test_incomplete_then_complete(self) -> None:
        """Nothing comes out until a reply is whole."""
        parser = RespParser()
        self.assertEqual(parser.feed(b"*2\r\n$3\r\nabc\r\n$4\r\nde"), [])
        self.assertEqual(parser.feed(b"fg\r\n"), [[b"abc", b"defg"]])

    def test_error_kind(self) -> None:
        self.assertEqual(RespError("NOSCRIPT No matching").kind, "NOSCRIPT")

    def test_not_resp(self) -> None:
        """
        Bytes that are not RESP raise, so the connection can be dropped
        (a blob error too: Redis sends none).
        """
        for wire in (b"?what\r\n", b"$x\r\n", b"!9\r\nERR wrong\r\n"):
            with self.assertRaises(ProtocolError):
                RespParser().feed(wire)


class EncodeTests(SynchronousTestCase):
    def test_command(self) -> None:
        """Arguments become bulk strings: str as UTF-8, int as digits, bytes as is."""
        self.assertEqual(
            encode_command(b"SET", "clé", 12, b"\r\n"),
            b"*4\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$2\r\n12\r\n$2\r\n\r\n\r\n",
        )

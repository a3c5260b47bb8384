"""
The SSE wire format (SPEC §5.2): table tests for the encoder and the
WHATWG decoder, each input fed whole and one byte at a time, and a
property test that decoding undoes encoding.
"""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.sse import Comment, Decoder, Event, encode, encode_fields, encode_retry


def decode_whole(data: bytes) -> list[Event | Comment]:
    return Decoder().feed(data)


def decode_bytewise(data: bytes) -> list[Event | Comment]:
    decoder = Decoder()
    out: list[Event | Comment] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out


class EncodeTests(SynchronousTestCase):
    """`encode`, byte for byte."""

    CASES: list[tuple[Event | Comment, bytes]] = [
        (Event("hi"), b"data: hi\n\n"),
        (Event(""), b"data: \n\n"),
        (Event("a\nb\r\nc\rd"), b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
        (Event("x\n"), b"data: x\ndata: \n\n"),
        (Event(" lead"), b"data:  lead\n\n"),
        (
            Event("m", event="chat", id="7", retry=3000),
            b"id: 7\nevent: chat\nretry: 3000\ndata: m\n\n",
        ),
        (Event({"a": "é", "b": [1, 2]}), 'data: {"a":"é","b":[1,2]}\n\n'.encode()),
        (Event(None), b"data: null\n\n"),
        (Event(b"caf\xc3\xa9"), "data: café\n\n".encode()),
        (Event(42), b"data: 42\n\n"),
        (Event("x", id=""), b"id: \ndata: x\n\n"),
        (Comment("hello"), b": hello\n"),
        (Comment(""), b":\n"),
        (Comment("a\nb"), b": a\n: b\n"),
    ]

    def test_cases(self) -> None:
        """Each value encodes to exactly its bytes (no BOM, LF endings)."""
        for item, expected in self.CASES:
            with self.subTest(item=item):
                self.assertEqual(encode(item), expected)

    def test_injection_refused(self) -> None:
        """CR or LF in ``event``/``id`` and NUL in ``id`` are errors."""
        for kwargs in (
            {"event": "a\nb"},
            {"event": "a\rb"},
            {"id": "1\n"},
            {"id": "1\r"},
            {"id": "1\0"},
        ):
            with self.subTest(**kwargs):
                self.assertRaises(ValueError, Event, "x", **kwargs)
                self.assertRaises(ValueError, encode_fields, "x", **kwargs)

    def test_fields_must_be_text(self) -> None:
        """``event`` and ``id`` that are not ``str`` are a ``TypeError``."""
        self.assertRaises(TypeError, Event, "x", id=5)
        self.assertRaises(TypeError, encode_fields, "x", event=b"chat")

    def test_bad_retry(self) -> None:
        """``retry`` must be a non-negative int."""
        for retry in (-1, 1.5, "10", True):
            with self.subTest(retry=retry):
                self.assertRaises(ValueError, Event, "x", retry=retry)
                self.assertRaises(ValueError, encode_retry, retry)

    def test_retry_line(self) -> None:
        """
        ``encode_retry`` sets the reconnection time at once and joins the
        next event's block: no event of its own.
        """
        self.assertEqual(encode_retry(3000), b"retry: 3000\n")
        decoder = Decoder()
        self.assertEqual(decoder.feed(encode_retry(3000)), [])
        self.assertEqual(decoder.retry, 3000)
        (event,) = decoder.feed(encode(Event("first", event="ready")))
        self.assertEqual((event.event, event.data), ("ready", "first"))

    def test_bad_data(self) -> None:
        """NaN is not JSON; invalid UTF-8 bytes are refused."""
        self.assertRaises(ValueError, encode, Event(float("nan")))
        self.assertRaises(ValueError, encode, Event(b"\xff"))


class DecodeTests(SynchronousTestCase):
    """`Decoder`, per the WHATWG parsing rules."""

    CASES: list[tuple[bytes, list[Event | Comment]]] = [
        (b"data: hi\n\n", [Event("hi")]),
        (b"data: a\r\ndata: b\r\n\r\n", [Event("a\nb")]),
        (b"data: a\rdata: b\r\r", [Event("a\nb")]),
        (b"\xef\xbb\xbfdata: bom\n\n", [Event("bom")]),
        (b"data:nospace\n\n", [Event("nospace")]),
        (b"data:  two\n\n", [Event(" two")]),
        (b"data\n\n", [Event("")]),
        (b"data: x\n", []),
        (b"event: e\nid: 1\nretry: 5\ndata: x\n\n", [Event("x", "e", "1", 5)]),
        (b"retry: 5x\ndata: x\n\n", [Event("x")]),
        (b"id: a\0b\ndata: x\n\n", [Event("x")]),
        (b"foo: bar\ndata: x\n\n", [Event("x")]),
        (b"event: e\n\n", []),
        (b"event:\ndata: x\n\n", [Event("x")]),
        (b": ping\n:\n", [Comment("ping"), Comment("")]),
        ("data: é€😀\n\n".encode(), [Event("é€😀")]),
        (b"data: \xff\n\n", [Event("\ufffd")]),
    ]

    def test_cases(self) -> None:
        """Each stream decodes to its items, fed whole and byte by byte."""
        for data, expected in self.CASES:
            with self.subTest(data=data):
                self.assertEqual(decode_whole(data), expected)
                self.assertEqual(decode_bytewise(data), expected)

    def test_bom_only_at_start(self) -> None:
        """A BOM later in the stream is data."""
        decoder = Decoder()
        decoder.feed(b"data: a\n\n")
        self.assertEqual(decoder.feed(b"data: \xef\xbb\xbfb\n\n"), [Event("\ufeffb")])

    def test_last_event_id_persists(self) -> None:
        """``last_event_id`` outlives its event; ``id`` is per block."""
        decoder = Decoder()
        items = decoder.feed(b"id: 1\ndata: a\n\ndata: b\n\n")
        self.assertEqual(items, [Event("a", id="1"), Event("b")])
        self.assertEqual(decoder.last_event_id, "1")

    def test_retry_alone(self) -> None:
        """A block with only ``retry`` dispatches nothing but sets it."""
        decoder = Decoder()
        self.assertEqual(decoder.feed(b"retry: 2500\n\n"), [])
        self.assertEqual(decoder.retry, 2500)

    def test_max_event_size(self) -> None:
        """An event past the limit is an error, also across lines."""
        decoder = Decoder(max_event_size=20)
        self.assertRaises(ValueError, decoder.feed, b"data: " + b"x" * 20)
        decoder = Decoder(max_event_size=20)
        decoder.feed(b"data: 12345\n")
        self.assertRaises(ValueError, decoder.feed, b"data: 123456\n")

    def test_size_resets_per_event(self) -> None:
        """The limit is per event, not per stream."""
        decoder = Decoder(max_event_size=20)
        for _ in range(5):
            self.assertEqual(decoder.feed(b"data: 12345\n\n"), [Event("12345")])


names = st.text(
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    min_size=1,
)


class RoundTripTests(SynchronousTestCase):
    """decode(encode(e)) == e."""

    @given(
        data=st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\r")
        ),
        event=st.none() | names,
        id=st.none()
        | st.text(
            st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",))
        ),
        retry=st.none() | st.integers(min_value=0, max_value=sys.maxsize),
    )
    def test_round_trip(
        self, data: str, event: str | None, id: str | None, retry: int | None
    ) -> None:
        """Any event survives encoding and decoding, whole or byte by byte."""
        original = Event(data, event=event, id=id, retry=retry)
        wire = encode(original)
        self.assertEqual(decode_whole(wire), [original])
        self.assertEqual(decode_bytewise(wire), [original])

    @given(data=st.text(st.characters(blacklist_categories=("Cs",))))
    def test_line_breaks_normalised(self, data: str) -> None:
        """CR and CRLF in data come back as LF."""
        decoded = decode_whole(encode(Event(data)))
        self.assertEqual(
            decoded, [Event(data.replace("\r\n", "\n").replace("\r", "\n"))]
        )


class PurityTests(SynchronousTestCase):
    """The codec is sans-I/O: it imports nothing from Twisted or Klein."""

    def test_no_twisted_import(self) -> None:
        """
        Every import in ``oxian_tw/sse.py`` is from the standard library, or
        one of our modules that is itself so (checked the same way).
        """
        import ast
        import importlib

        def imports(module_name: str) -> set[str]:
            module = importlib.import_module(module_name)
            with open(module.__file__ or "", encoding="utf-8") as f:
                tree = ast.parse(f.read())
            found = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level:
                    found |= imports(f"oxian_tw.{node.module}")
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.add(node.module.split(".")[0])
            return found

        imported = imports("oxian_tw.sse")
        self.assertEqual(imported & {"twisted", "klein", "zope", "oxian_tw"}, set())
        self.assertLessEqual(imported, set(sys.stdlib_module_names) | {"__future__"})

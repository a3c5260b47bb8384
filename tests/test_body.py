"""
Tests for body and query parsing and the ``data`` merge (SPEC §3).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import HttpError
from oxian_tw._body import FORM_FIELDS, build_data, parse_body, parse_query

BOUNDARY = "XyZ"


def multipart(*parts: tuple[str, str | None, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, content_type, content in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


class ParseBodyTests(SynchronousTestCase):
    """One test per row of the body table."""

    def test_json(self) -> None:
        """``application/json`` is parsed; values keep their JSON types."""
        self.assertEqual(
            parse_body("application/json; charset=utf-8", b'{"a": 1, "b": [true]}'),
            {"a": 1, "b": [True]},
        )

    def test_json_suffix(self) -> None:
        """``+json`` media types are JSON too."""
        self.assertEqual(parse_body("application/merge-patch+json", b"[1]"), [1])

    def test_invalid_json(self) -> None:
        """Invalid JSON is a 400."""
        error = self.assertRaises(HttpError, parse_body, "application/json", b"{")
        self.assertEqual(error.status, 400)

    def test_json_nan_and_infinity(self) -> None:
        """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON: a 400."""
        for text in (b"NaN", b'{"a": Infinity}', b"[-Infinity]"):
            error = self.assertRaises(HttpError, parse_body, "application/json", text)
            self.assertEqual(error.status, 400)
            self.assertIn("not a JSON number", error.message)

    def test_json_lone_surrogate(self) -> None:
        """
        A lone surrogate escape is no Unicode text: 400 (it could never be
        encoded again). A surrogate pair is one character.
        """
        for text in (b'{"m": "\\ud800"}', b'["\\uDC00"]', b'{"\\udbff": 1}'):
            with self.subTest(text=text):
                error = self.assertRaises(
                    HttpError, parse_body, "application/json", text
                )
                self.assertEqual(error.status, 400)
                self.assertIn("lone surrogate", error.message)
        self.assertEqual(
            parse_body("application/json", b'["\\ud83d\\ude00", "\\\\ud800"]'),
            ["\U0001f600", "\\ud800"],
        )

    def test_json_nested_too_deeply(self) -> None:
        """100,000 nested arrays are a 400, not a ``RecursionError``."""
        error = self.assertRaises(
            HttpError, parse_body, "application/json", b"[" * 100_000
        )
        self.assertEqual(error.status, 400)

    def test_form(self) -> None:
        """A urlencoded form is a dict; repeated keys give lists."""
        self.assertEqual(
            parse_body("application/x-www-form-urlencoded", b"a=1&b=x+y&a=2&c="),
            {"a": ["1", "2"], "b": "x y", "c": ""},
        )

    def test_multipart(self) -> None:
        """Multipart fields are strings; files are dicts with their bytes."""
        body = multipart(
            ("title", None, None, b"hello"),
            ("doc", "a.bin", "application/octet-stream", b"\x00\x01\x02"),
        )
        self.assertEqual(
            parse_body(f"multipart/form-data; boundary={BOUNDARY}", body),
            {
                "title": "hello",
                "doc": {
                    "filename": "a.bin",
                    "content_type": "application/octet-stream",
                    "size": 3,
                    "content": b"\x00\x01\x02",
                },
            },
        )

    def test_multipart_malformed(self) -> None:
        """A multipart body without a boundary is a 400."""
        error = self.assertRaises(
            HttpError, parse_body, "multipart/form-data", b"--x\r\n"
        )
        self.assertEqual(error.status, 400)

    def test_multipart_as_sent(self) -> None:
        """
        What browsers and curl send: a preamble, no part headers but the
        disposition, quoted and escaped names, RFC 8187 ``filename*``,
        near-delimiters inside a file, padding after a delimiter,
        empty values and an epilogue.
        """
        body = (
            b"preamble\r\n"
            b"--XyZ  \r\n"
            b'Content-Disposition: form-data; name="a"\r\n\r\n'
            b"1\r\n"
            b"--XyZ\r\n"
            b'content-disposition: form-data; name="q\\"uote"; filename="x;y.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n"
            b"line\r\n-XyZ\r\n--Xy\r\n\r\n"
            b"--XyZ\r\n"
            b"Content-Disposition: form-data; name=a\r\n\r\n"
            b"\r\n"
            b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="f"; filename="ignored"; '
            b"filename*=UTF-8''caf%C3%A9.txt\r\n\r\n"
            b"\r\n"
            b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="t"\r\n'
            b"Content-Type: text/plain; charset=latin-1\r\n\r\n"
            b"\xe9\r\n"
            b"--XyZ--\r\nepilogue"
        )
        self.assertEqual(
            parse_body("multipart/form-data; boundary=XyZ", body),
            {
                "a": ["1", ""],
                'q"uote': {
                    "filename": "x;y.txt",
                    "content_type": "text/plain",
                    "size": 18,
                    "content": b"line\r\n-XyZ\r\n--Xy\r\n",
                },
                "f": {
                    "filename": "caf\xe9.txt",
                    "content_type": "application/octet-stream",
                    "size": 0,
                    "content": b"",
                },
                "t": "\xe9",
            },
        )

    def test_multipart_broken(self) -> None:
        """Each way a multipart body can be cut or garbled is a 400."""
        good = multipart(("a", None, None, b"1"))
        for content_type, body in [
            ("multipart/form-data; boundary=" + "x" * 71, good),
            ("multipart/form-data; boundary=Other", good),
            ("multipart/form-data; boundary=XyZ", good[:-9]),
            ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno colon\r\n\r\nx"),
            ("multipart/form-data; boundary=XyZ", b"--XyZjunk\r\n"),
            (
                "multipart/form-data; boundary=XyZ",
                b"--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\n1\r\n--XyZ--",
            ),
            (
                "multipart/form-data; boundary=XyZ",
                b"--XyZ\r\nContent-Disposition: form-data\r\n\r\n1\r\n--XyZ--",
            ),
            (
                "multipart/form-data; boundary=XyZ",
                b"--XyZ\r\nX: " + b"y" * 20000 + b"\r\n\r\n1\r\n--XyZ--",
            ),
        ]:
            with self.subTest(content_type=content_type, body=body[:40]):
                error = self.assertRaises(HttpError, parse_body, content_type, body)
                self.assertEqual(error.status, 400)

    def test_form_field_cap(self) -> None:
        """
        More fields than ``max_fields`` (multipart or urlencoded) is a 413;
        as many is accepted.
        """
        parts = [(f"f{n}", None, None, b"") for n in range(5)]
        body = multipart(*parts)
        kind = f"multipart/form-data; boundary={BOUNDARY}"
        self.assertEqual(len(parse_body(kind, body, max_fields=5)), 5)
        error = self.assertRaises(HttpError, parse_body, kind, body, max_fields=4)
        self.assertEqual((error.status, error.message), (413, "Too many form fields"))
        form = "application/x-www-form-urlencoded"
        self.assertEqual(len(parse_body(form, b"a&b&c&d&e", max_fields=5)), 5)
        error = self.assertRaises(
            HttpError, parse_body, form, b"a&b&c&d&e", max_fields=4
        )
        self.assertEqual(error.status, 413)
        # The default is FORM_FIELDS.
        many = b"&".join(b"f%d" % n for n in range(FORM_FIELDS + 1))
        self.assertEqual(
            self.assertRaises(HttpError, parse_body, form, many).status, 413
        )

    def test_text(self) -> None:
        """``text/*`` is a str, decoded with its charset."""
        self.assertEqual(parse_body("text/plain", "héllo".encode()), "héllo")
        self.assertEqual(
            parse_body("text/csv; charset=latin-1", "é".encode("latin-1")), "é"
        )

    def test_text_bad_encoding(self) -> None:
        """Undecodable text is a 400."""
        error = self.assertRaises(HttpError, parse_body, "text/plain", b"\xff")
        self.assertEqual(error.status, 400)

    def test_other(self) -> None:
        """Any other type (or none) gives ``None``."""
        self.assertIsNone(parse_body("application/octet-stream", b"\x00"))
        self.assertIsNone(parse_body(None, b"abc"))

    def test_empty(self) -> None:
        """An empty body is ``None``, even as JSON."""
        self.assertIsNone(parse_body("application/json", b""))


class QueryTests(SynchronousTestCase):
    """Query strings."""

    def test_values(self) -> None:
        """Values are strings, percent-decoded; repeated keys give lists."""
        self.assertEqual(
            parse_query(b"a=1&b=%C3%A9&a=2&flag"),
            {"a": ["1", "2"], "b": "é", "flag": ""},
        )

    def test_bad_utf8(self) -> None:
        """A query that is not UTF-8 is a 400."""
        error = self.assertRaises(HttpError, parse_query, b"a=%FF")
        self.assertEqual(error.status, 400)


class BuildDataTests(SynchronousTestCase):
    """The ``data`` merge."""

    def test_order(self) -> None:
        """Body < query < path params."""
        self.assertEqual(
            build_data({"a": 1, "b": 1, "c": 1}, {"b": "2", "c": "2"}, {"c": "3"}),
            {"a": 1, "b": "2", "c": "3"},
        )

    def test_non_dict_body(self) -> None:
        """A list or string body is not merged."""
        self.assertEqual(build_data([1, 2], {"q": "1"}, {}), {"q": "1"})
        self.assertEqual(build_data("text", {}, {}), {})

"""
`oxian_tw._headers`: `FastHeaders` means what Twisted's ``Headers`` means,
call for call (hypothesis drives both with the same calls), and the
fallback when the installed Twisted stores or encodes names otherwise.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http_headers
from twisted.web.http_headers import Headers, InvalidHeaderName

from oxian_tw import _headers
from oxian_tw._headers import FAST, FastHeaders, add_fields, fast_headers

_names = st.sampled_from(
    [b"content-type", b"Content-Type", b"X-Request-Id", b"host", "Accept", b"a b"]
)
_values = st.one_of(
    st.binary(max_size=8),
    st.sampled_from([b"text/plain", b"a\r\nb", b"x\ny", "caf\u00e9", b""]),
)
_calls = st.lists(
    st.one_of(
        st.tuples(st.just("setRawHeaders"), _names, st.lists(_values, max_size=3)),
        st.tuples(st.just("addRawHeader"), _names, _values),
        st.tuples(st.just("getRawHeaders"), _names),
        st.tuples(st.just("hasHeader"), _names),
        st.tuples(st.just("removeHeader"), _names),
    ),
    max_size=12,
)


def _apply(headers: Headers, call: tuple[Any, ...]) -> Any:
    method, *args = call
    try:
        return ("ok", getattr(headers, method)(*args))
    except (InvalidHeaderName, TypeError, UnicodeError) as error:
        return ("raised", type(error))


class SameAsTwistedTests(SynchronousTestCase):
    """Every call gives what ``Headers`` gives, and leaves the same state."""

    def test_fast_with_this_twisted(self) -> None:
        self.assertTrue(FAST)
        self.assertTrue(issubclass(FastHeaders, Headers))
        self.assertIsNot(FastHeaders, Headers)

    @settings(max_examples=300, deadline=None)
    @given(_calls)
    def test_calls(self, calls: list[tuple[Any, ...]]) -> None:
        ours, theirs = fast_headers(), Headers()
        for call in calls:
            self.assertEqual(_apply(ours, call), _apply(theirs, call), call)
            self.assertEqual(
                sorted(ours.getAllRawHeaders()), sorted(theirs.getAllRawHeaders())
            )

    def test_values_copied(self) -> None:
        """The list given is not kept (a caller may change it after)."""
        values = [b"a"]
        headers = fast_headers()
        headers.setRawHeaders(b"X-A", [b"0"])  # the name is cached now
        headers.setRawHeaders(b"X-A", values)
        values.append(b"b")
        self.assertEqual(headers.getRawHeaders(b"X-A"), [b"a"])

    def test_line_breaks_sanitized(self) -> None:
        """A value with CR or LF is Twisted's to sanitize (response splitting)."""
        headers = fast_headers()
        headers.setRawHeaders(b"Content-Type", [b"ok"])
        headers.setRawHeaders(b"Content-Type", [b"a\r\nSet-Cookie: x"])
        headers.addRawHeader(b"Content-Type", b"b\nc")
        self.assertEqual(
            headers.getRawHeaders(b"content-type"), [b"a Set-Cookie: x", b"b c"]
        )

    def test_add_fields(self) -> None:
        """A parsed head's fields, in order, names canonical."""
        fields = [(b"host", b"x"), (b"X-Two", b"1"), (b"x-two", b"2")]
        for headers in (fast_headers(), Headers()):
            add_fields(headers, fields)
            self.assertEqual(
                list(headers.getAllRawHeaders()),
                [(b"Host", [b"x"]), (b"X-Two", [b"1", b"2"])],
            )

    def test_cache_bounded(self) -> None:
        """Names sent by clients cannot grow the cache past its bound."""
        self.patch(_headers, "MAX_CACHED", len(_headers._canonical))
        headers = fast_headers()
        headers.getRawHeaders(b"X-Never-Seen-Before")
        self.assertNotIn(b"X-Never-Seen-Before", _headers._canonical)


class FallbackTests(SynchronousTestCase):
    """A Twisted that stores or encodes names otherwise: no short cuts."""

    def test_without_the_encoder(self) -> None:
        self.patch(http_headers, "_nameEncoder", None)
        self.assertFalse(_headers._twisted_headers_state())

    def test_other_storage(self) -> None:
        class Other(Headers):
            __slots__ = ()

            def setRawHeaders(self, name: Any, values: Any) -> None:
                self._rawHeaders[name] = list(values)

        self.patch(_headers, "Headers", Other)
        self.assertFalse(_headers._twisted_headers_state())

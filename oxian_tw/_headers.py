# -*- test-case-name: tests.test_headers -*-
"""
`FastHeaders`: Twisted's ``Headers`` with its hot methods short-cut, for
the request and response of every request an `oxian_tw._site.OxianSite`
serves (issue 33: Twisted's ``Headers`` were a quarter of a plain request's
own time: five ``setRawHeaders``, eight ``getRawHeaders`` and three
``addRawHeader`` calls, each encoding its name through a method call).

The short cuts keep ``Headers``' meaning exactly: names are looked up in
a cache of their canonical form (``Content-Type``) filled by Twisted's own
encoder, values are bytes without ``CR``/``LF`` (else Twisted's method
runs and sanitizes them), stored where ``Headers`` stores them; anything
else (``str`` names or values, a name never seen) takes Twisted's method.
The class stays a ``Headers``: ``isinstance``, ``getAllRawHeaders``,
``copy``, equality and the rest are Twisted's.

Where they are stored (``Headers._rawHeaders``) and how names are
canonicalized (``twisted.web.http_headers._nameEncoder``) are private to
Twisted: both are checked at import (`FAST`). Without them `FastHeaders`
is ``Headers`` itself and `add_fields` adds through ``addRawHeader``;
``tests/test_headers.py`` runs both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.web import http_headers
from twisted.web.http_headers import Headers

__all__ = ("FAST", "FastHeaders", "add_fields", "fast_headers")

#: Names cached, as Twisted caps its own cache (so that a client sending
#: endless new names cannot grow it).
MAX_CACHED = 10_000


def _twisted_headers_state() -> bool:
    """Whether ``Headers`` stores and encodes names as used here."""
    encoder = getattr(http_headers, "_nameEncoder", None)
    if encoder is None or not callable(getattr(encoder, "encode", None)):
        return False
    try:
        probe = Headers()
        probe.setRawHeaders(b"x-probe-name", [b"1"])
        raw = probe._rawHeaders
    except Exception:
        return False
    return (
        type(raw) is dict
        and raw == {b"X-Probe-Name": [b"1"]}
        and encoder.encode(b"x-probe-name") == b"X-Probe-Name"
    )


#: Whether the short cuts are taken with the installed Twisted.
FAST: bool = _twisted_headers_state()

_canonical: dict[Any, bytes] = {}


def _encode(name: bytes) -> bytes:
    """The canonical form of ``name`` (Twisted's), cached here."""
    canonical: bytes = http_headers._nameEncoder.encode(name)
    if len(_canonical) < MAX_CACHED:
        _canonical[name] = canonical
    return canonical


# (``13 in value`` is a ``memchr``; ``b"\r" in value`` takes the buffer
# protocol's path and costs eight times as much.)
_CR, _LF = 13, 10


def _clean(values: Sequence[Any]) -> bool:
    for value in values:
        if type(value) is not bytes or _CR in value or _LF in value:
            return False
    return True


class _FastHeaders(Headers):
    """``Headers`` whose hot methods are short-cut (module docstring)."""

    __slots__ = ()

    def setRawHeaders(self, name: Any, values: Sequence[Any]) -> None:
        canonical = _canonical.get(name)
        if canonical is not None:
            if type(values) is list and len(values) == 1:
                # The usual call, checked inline.
                value = values[0]
                if type(value) is bytes and _CR not in value and _LF not in value:
                    self._rawHeaders[canonical] = [value]
                    return
            elif _clean(values):
                self._rawHeaders[canonical] = list(values)
                return
        super().setRawHeaders(name, values)
        if type(name) is bytes:
            _encode(name)

    def addRawHeader(self, name: Any, value: Any) -> None:
        canonical = _canonical.get(name)
        if (
            canonical is not None
            and type(value) is bytes
            and _CR not in value
            and _LF not in value
        ):
            values = self._rawHeaders.get(canonical)
            if values is None:
                self._rawHeaders[canonical] = [value]
            else:
                values.append(value)
            return
        super().addRawHeader(name, value)
        if type(name) is bytes:
            _encode(name)

    def getRawHeaders(self, name: Any, default: Any = None) -> Any:
        canonical = _canonical.get(name)
        if canonical is None or type(name) is not bytes:
            if type(name) is bytes:
                _encode(name)
            return super().getRawHeaders(name, default)
        return self._rawHeaders.get(canonical) or default

    def hasHeader(self, name: Any) -> bool:
        canonical = _canonical.get(name)
        if canonical is None or type(name) is not bytes:
            if type(name) is bytes:
                _encode(name)
            return super().hasHeader(name)
        return canonical in self._rawHeaders

    def add_fields(self, fields: Sequence[tuple[bytes, bytes]]) -> None:
        """
        Add the fields of a parsed request head: names that are tokens and
        values without ``CR``, ``LF`` or ``NUL`` (llhttp checked both).
        """
        raw = self._rawHeaders
        for name, value in fields:
            canonical = _canonical.get(name) or _encode(name)
            values = raw.get(canonical)
            if values is None:
                raw[canonical] = [value]
            else:
                values.append(value)


if FAST:
    FastHeaders: type[Headers] = _FastHeaders
else:  # pragma: no cover - exercised by tests/test_headers.py's fallback
    FastHeaders = Headers


def fast_headers() -> Headers:
    """An empty `FastHeaders`."""
    return FastHeaders()


def add_fields(headers: Headers, fields: Sequence[tuple[bytes, bytes]]) -> None:
    """Add the fields of a parsed request head to ``headers``."""
    if isinstance(headers, _FastHeaders):
        headers.add_fields(fields)
        return
    add = headers.addRawHeader
    for name, value in fields:
        add(name, value)

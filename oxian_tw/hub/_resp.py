# -*- test-case-name: tests.test_resp -*-
"""
RESP3, the Redis protocol, without I/O (the hub's Redis backend speaks it
through `oxian_tw._redis`): `encode_command` turns a command into bytes and
`RespParser` turns received bytes into replies, however the bytes are split.

Replies are Python values: simple strings and verbatim strings as ``str``,
bulk strings as ``bytes``, integers and big numbers as ``int``, doubles as
``float``, booleans as ``bool``, null as ``None``, arrays and sets as
``list``, maps as ``dict``, errors as `RespError` *values* (a command's
failure is its reply, not a parser failure) and out-of-band pushes as `Push`.
Attributes are read and dropped.
"""

from __future__ import annotations

from typing import Any


class RespError(Exception):
    """An error reply (``-ERR ...``), e.g. ``NOSCRIPT`` or ``WRONGPASS``."""

    @property
    def kind(self) -> str:
        """The error's first word: ``ERR``, ``NOSCRIPT``, ``WRONGPASS``..."""
        return str(self).partition(" ")[0]


class ProtocolError(Exception):
    """The bytes received are not RESP: the connection must be dropped."""


class Push(list):  # type: ignore[type-arg]
    """An out-of-band push (RESP3 ``>``), e.g. a pub/sub ``message``."""


def encode_command(*args: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


# Aggregate types: how many items a header's count means.
_AGGREGATES = {b"*": 1, b"~": 1, b">": 1, b"%": 2, b"|": 2}
_BLOBS = frozenset(b"$!=")


class _Open:
    """An aggregate whose items are still arriving."""

    __slots__ = ("kind", "items", "left")

    def __init__(self, kind: bytes, left: int) -> None:
        self.kind = kind
        self.items: list[Any] = []
        self.left = left

    def value(self) -> Any:
        if self.kind == b"%":
            items = iter(self.items)
            return {_key(k): v for k, v in zip(items, items, strict=True)}
        if self.kind == b">":
            return Push(self.items)
        return self.items


def _key(key: Any) -> Any:
    # Map keys may be bulk strings; a dict needs them hashable.
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


class RespParser:
    """
    Incremental RESP3 parser: `feed` bytes, get the replies completed by
    them. Work is proportional to the bytes received, however they are
    split: a partly received aggregate keeps its finished items.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._open: list[_Open] = []

    def feed(self, data: bytes) -> list[Any]:
        """
        :return: the replies completed by ``data``, in order.
        :raises ProtocolError: for bytes that are not RESP.
        """
        self._buffer += data
        buffer, pos = self._buffer, 0
        replies: list[Any] = []
        while True:
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            kind, line = bytes(buffer[pos : pos + 1]), bytes(buffer[pos + 1 : end])
            if kind[0] in _BLOBS:
                size = _integer(line)
                if size < 0:
                    pos, value = end + 2, None
                elif len(buffer) < end + 2 + size + 2:
                    break
                else:
                    blob = bytes(buffer[end + 2 : end + 2 + size])
                    pos = end + 2 + size + 2
                    value = _blob(kind, blob)
            else:
                pos = end + 2
                if kind in _AGGREGATES:
                    count = _integer(line)
                    if count < 0:
                        value = None
                    elif count:
                        self._open.append(_Open(kind, count * _AGGREGATES[kind]))
                        continue
                    else:
                        value = _Open(kind, 0).value()
                else:
                    value = _simple(kind, line)
            self._complete(value, replies)
        del buffer[:pos]
        return replies

    def _complete(self, value: Any, replies: list[Any]) -> None:
        while self._open:
            top = self._open[-1]
            top.items.append(value)
            top.left -= 1
            if top.left:
                return
            self._open.pop()
            if top.kind == b"|":
                # An attribute annotates the next value: drop it, wait.
                return
            value = top.value()
        replies.append(value)


def _integer(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"not a RESP length or integer: {line[:40]!r}") from None


def _simple(kind: bytes, line: bytes) -> Any:
    text = line.decode("utf-8", "replace")
    if kind == b"+":
        return text
    if kind == b"-":
        return RespError(text)
    if kind in (b":", b"("):
        return _integer(line)
    if kind == b"_":
        return None
    if kind == b"#":
        return line == b"t"
    if kind == b",":
        try:
            return float(text)
        except ValueError:
            raise ProtocolError(f"not a RESP double: {line[:40]!r}") from None
    raise ProtocolError(f"unknown RESP type {kind!r}")


def _blob(kind: bytes, blob: bytes) -> Any:
    if kind == b"$":
        return blob
    text = blob.decode("utf-8", "replace")
    if kind == b"!":
        return RespError(text)
    # Verbatim: "txt:" or "mkd:" then the text.
    return text[4:]

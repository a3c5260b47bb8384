# -*- test-case-name: tests.test_sse_codec -*-
"""
Server-Sent Events on the wire (SPEC §5.2, WHATWG HTML §9.2): the `Event`
and `Comment` values, `encode`, and a `Decoder` for tests and clients.

Pure: no Twisted, no I/O. ``encode`` writes exactly the contract's format;
``Decoder`` follows the WHATWG parsing rules, so what a browser's
``EventSource`` would see is what a test sees.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

from ._json import COMPACT_JSON
from ._text import is_decimal

__all__ = ("Comment", "Decoder", "Event", "encode", "encode_fields", "encode_retry")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """
    One event. ``data`` is encoded by `encode`: a ``str`` as is, bytes as
    UTF-8, anything else as compact JSON; a decoded event's ``data`` is the
    ``str`` received (line breaks as ``\\n``).

    :raises ValueError: ``event`` or ``id`` with CR or LF, ``id`` with NUL,
        or a ``retry`` that is not a non-negative ``int``.
    """

    data: Any = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self.event, self.id, self.retry)


@dataclass(frozen=True)
class Comment:
    """A comment line (or lines); ``Comment("")`` is the heartbeat ``:``."""

    text: str = ""


def _check_fields(event: str | None, id: str | None, retry: int | None) -> None:
    """
    Refuse field values that would break the framing.

    :raises TypeError: ``event`` or ``id`` that is not a ``str``.
    :raises ValueError: ``event`` or ``id`` with CR or LF, ``id`` with NUL,
        or a ``retry`` that is not a non-negative ``int``.
    """
    for name, value in (("event", event), ("id", id)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"SSE {name} must be a str, not {type(value).__name__}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"SSE {name} must not contain CR or LF: {value!r}")
    if id is not None and "\0" in id:
        raise ValueError(f"SSE id must not contain NUL: {id!r}")
    if retry is not None and (
        isinstance(retry, bool) or not isinstance(retry, int) or retry < 0
    ):
        raise ValueError(f"SSE retry must be a non-negative int: {retry!r}")


def _data_text(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).decode("utf-8")
    return COMPACT_JSON.encode(data)


def encode(item: Event | Comment) -> bytes:
    """
    The bytes of one event (fields ``id``, ``event``, ``retry``, ``data``,
    then a blank line) or of a comment.

    :raises ValueError: for data that is not valid UTF-8 or not JSON-able.
    """
    if isinstance(item, Comment):
        return "".join(
            f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(item.text)
        ).encode("utf-8")
    return encode_fields(item.data, item.event, item.id, item.retry)


def encode_fields(
    data: Any,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """
    `encode` of ``Event(data, event, id, retry)`` without building the
    value: the path a server takes for every event it sends.

    :raises ValueError: as `Event` and `encode` do.
    """
    _check_fields(event, id, retry)
    text = _data_text(data)
    if "\n" in text or "\r" in text:
        body = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(text))
    else:
        body = f"data: {text}\n"
    if id is None and event is None and retry is None:
        return f"{body}\n".encode()
    head = "" if id is None else f"id: {id}\n"
    if event is not None:
        head += f"event: {event}\n"
    if retry is not None:
        head += f"retry: {retry}\n"
    return f"{head}{body}\n".encode()


def encode_retry(milliseconds: int) -> bytes:
    """
    The line that sets the client's reconnection time (``retry: N``),
    without a blank line: it joins the block of the next event (or is
    dropped unfinished when the stream ends), so it never makes an event
    of its own. (A block holding only ``retry:`` is an event with empty
    data to some clients: httpx-sse.) Browsers apply it when they read it.

    :raises ValueError: for a ``retry`` that is not a non-negative ``int``.
    """
    _check_fields(None, None, milliseconds)
    return f"retry: {milliseconds}\n".encode()


class Decoder:
    """
    Incremental WHATWG event-stream parser: `feed` it bytes as they arrive
    (split anywhere) and get the events and comments they complete.

    Line endings may be CRLF, CR or LF; a leading BOM is skipped; unknown
    fields are ignored; an ``id`` containing NUL is ignored; ``retry`` counts
    only when all digits. An event's ``id`` is the ``id`` field of its own
    block (``None`` without one); `last_event_id` follows the WHATWG rule
    (it persists across events), and `retry` is the last reconnection time.

    :param max_event_size: the most characters (all its lines, field names
        and line breaks included) one event may buffer before it is
        complete; more raises ``ValueError``.
    """

    def __init__(self, max_event_size: int = 1024 * 1024) -> None:
        self.max_event_size = max_event_size
        self.last_event_id = ""
        self.retry: int | None = None
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._line = ""
        self._after_cr = False
        self._reset()

    def _reset(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._event_retry: int | None = None
        self._size = 0

    def feed(self, data: bytes) -> list[Event | Comment]:
        """Parse ``data``; return what it completed, in order."""
        text = self._text.decode(data)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        out: list[Event | Comment] = []
        for char_run in _LINE_PARTS.finditer(text):
            run = char_run.group()
            if run == "\n" and self._after_cr:
                self._after_cr = False
                continue
            self._after_cr = run[-1] == "\r"
            if run in ("\r", "\n", "\r\n"):
                self._end_line(out)
                continue
            self._line += run
            if len(self._line) + self._size > self.max_event_size:
                raise ValueError(
                    f"an SSE event exceeds {self.max_event_size} characters"
                )
        return out

    def _end_line(self, out: list[Event | Comment]) -> None:
        line, self._line = self._line, ""
        if not line:
            self._dispatch(out)
            return
        self._size += len(line) + 1
        if line[0] == ":":
            out.append(Comment(line[1:].removeprefix(" ")))
            return
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry":
            if is_decimal(value):
                self.retry = self._event_retry = int(value)

    def _dispatch(self, out: list[Event | Comment]) -> None:
        if self._data:
            out.append(
                Event(
                    data="\n".join(self._data),
                    event=self._event or None,
                    id=self._id,
                    retry=self._event_retry,
                )
            )
        self._reset()


# Runs of ordinary characters, or one line break each.
_LINE_PARTS = re.compile(r"[^\r\n]+|\r\n|\r|\n")

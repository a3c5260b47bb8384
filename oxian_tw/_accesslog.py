# -*- test-case-name: tests.test_accesslog -*-
"""
The access log (SPEC §8, ``--access-log combined|json|off``): one line per
request when its response has ended, however it ended.

``combined`` is the Combined Log Format followed by ``request_id=``,
``duration_ms=`` and ``ended=`` fields (and ``client_request_id=`` when
the client sent an ``X-Request-Id`` that was not taken as the request's
id); ``json`` is one JSON object per line with ``ts``, ``request_id``,
``method``, ``path``, ``status``, ``bytes``, ``duration_ms``, ``client``
and ``ended`` (and ``client_request_id``). ``ended`` says how
the response ended (`ENDINGS`).

Where lines go (a sink): through ``twisted.logger`` (`LoggerSink`, the
default: wherever the process logs), or straight to a text stream
(`StreamSink`), batched once per reactor turn — what ``twistd -n oxian``
uses when twistd itself logs to stdout, because formatting an event per
request through the logging system costs as much as serving it.

A request records its entry (a tuple of the values its line needs) when
its response ends; the line is formatted when the sink writes it: a
`StreamSink` formats and writes the turn's lines together once the
turn's responses are out (issue 33), a `LoggerSink` at once. Quoted
fields (method, path, version, referer, user agent) repeat from request
to request and are escaped once (a bounded cache).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import Logger

from ._json import dump_json

#: ``--access-log`` values.
FORMATS = ("combined", "json", "off")

#: How a response can end, as the ``ended`` field says it.
ENDINGS = {
    "complete": "the whole response was handed to the network",
    "client_gone": "the client disconnected first",
    "aborted": "the server cut the connection (an error after the response "
    "started, a body that broke its Content-Length)",
    "too_slow": "the client fell behind past the buffer limit or SSE budget",
    "stuck": "the stream's buffer did not drain within --write-timeout",
    "shutdown": "the graceful shutdown ended the stream",
}

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
# What a quoted CLF field may hold as is: printable ASCII but '"' and '\'.
_NEEDS_ESCAPE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


#: Quoted fields kept escaped, each at most `MAX_QUOTED_LENGTH` bytes; the
#: cache is emptied when full (clients choose them): at most ~1 MiB.
MAX_QUOTED = 4096
MAX_QUOTED_LENGTH = 256
_quoted_cache: dict[bytes, str] = {}


def _quoted(raw: bytes | None) -> str:
    if not raw:
        return "-"
    quoted = _quoted_cache.get(raw)
    if quoted is not None:
        return quoted
    text = raw.decode("latin-1")
    if _NEEDS_ESCAPE.search(text) is None:
        quoted = text
    else:
        escaped = text.encode("unicode_escape").decode("ascii")
        quoted = escaped.replace('"', '\\"')
    if len(raw) <= MAX_QUOTED_LENGTH:
        if len(_quoted_cache) >= MAX_QUOTED:
            _quoted_cache.clear()
        _quoted_cache[raw] = quoted
    return quoted


_request_lines: dict[tuple[bytes, bytes, bytes], str] = {}


def _request_line(method: bytes, uri: bytes, proto: bytes) -> str:
    """
    The quoted request line, a stream token redacted (cached as `_quoted`
    caches its fields; not one with a token: a credential is not kept, and
    each client has its own).
    """
    key = (method, uri, proto)
    line = _request_lines.get(key)
    if line is None:
        redacted = _redacted(uri)
        line = f"{_quoted(method)} {_quoted(redacted)} {_quoted(proto)}"
        if redacted is uri and len(method) + len(uri) + len(proto) <= MAX_QUOTED_LENGTH:
            if len(_request_lines) >= MAX_QUOTED:
                _request_lines.clear()
            _request_lines[key] = line
    return line


#: A ``token`` query parameter's value (redacted from the log).
_TOKEN_PARAMETER = re.compile(rb"([?&])token=[^&#]*")


def _redacted(uri: bytes) -> bytes:
    """``uri`` without a stream token's value (a credential: never logged)."""
    if b"token=" in uri:
        return _TOKEN_PARAMETER.sub(b"\\1token=REDACTED", uri)
    return uri


#: A combined line's ``duration_ms`` (milliseconds to a tenth) below
#: `_TABLED` tenths, made once: formatting a float costs a tenth of a line.
_TABLED = 1000
_TENTHS = [f"{tenths // 10}.{tenths % 10}" for tenths in range(_TABLED)]


def _as_is(entries: list[Any]) -> str:
    return "".join(f"{entry}\n" for entry in entries)


# Module level: as a class attribute a Logger takes the class's name.
_access = Logger(namespace="oxian_tw.access")


class LoggerSink:
    """Each line as one ``twisted.logger`` event (namespace ``oxian_tw.access``)."""

    #: Formats entries into lines (set by its `AccessLog`).
    format: Callable[[list[Any]], str] = staticmethod(_as_is)

    def write(self, entry: Any) -> None:
        _access.info("{line}", line=self.format([entry])[:-1])

    def flush(self) -> None:
        """Nothing is held."""

    def close(self) -> None:
        """Nothing is held."""


class StreamSink:
    """
    Lines written to a text stream, batched: the entries of one reactor
    turn formatted, then written in one ``write`` and ``flush``, when the
    turn ends.

    :param stream: the text stream (``sys.stdout``).
    :param later: schedules a call for the end of the turn (the app's
        `oxian_tw._producer.Flusher`).
    """

    __slots__ = ("_stream", "_later", "_lines", "_closing", "format")

    def __init__(self, stream: IO[str], later: Callable[[Any], None]) -> None:
        self._stream = stream
        self._later = later
        self._lines: list[Any] = []
        self._closing = False
        #: Formats entries into lines (set by its `AccessLog`).
        self.format: Callable[[list[Any]], str] = _as_is

    def write(self, entry: Any) -> None:
        self._lines.append(entry)
        if self._closing:
            self.flush()
        elif len(self._lines) == 1:
            self._later(self)

    def _turn_ended(self, now: float) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is held now."""
        entries, self._lines = self._lines, []
        if entries:
            text = self.format(entries)
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                # A closed or broken stream must not break a request.
                pass

    def close(self) -> None:
        """Write what is held, and every later line at once (shutdown)."""
        self._closing = True
        self.flush()


class AccessLog:
    """
    Records access log entries and formats their lines for a sink.

    :param format: ``"combined"`` or ``"json"``.
    :param sink: a `LoggerSink` or `StreamSink`.
    """

    __slots__ = ("_sink", "_json", "_second", "_clf_date", "_iso_second")

    def __init__(self, format: str, sink: Any) -> None:
        if format not in ("combined", "json"):
            raise ValueError(f"an access log format is combined or json: {format!r}")
        self._json = format == "json"
        #: The second the dates are for (its start).
        self._second = -1.0
        self._clf_date = ""
        self._iso_second = ""
        self.sink = sink

    @property
    def sink(self) -> Any:
        """Where lines go; it formats entries with `format_entries`."""
        return self._sink

    @sink.setter
    def sink(self, sink: Any) -> None:
        sink.format = self.format_entries
        self._sink = sink

    def record(
        self,
        request: Any,
        request_id: str,
        status: int,
        started: float,
        now: float,
        ended: str,
        client_request_id: str | None = None,
        request_line: bool = True,
    ) -> None:
        """
        Record the entry of ``request``, whose response ended at ``now``
        (how: `ENDINGS`); without ``request_line``, its method and path are
        not known yet.
        """
        if request_line:
            method, uri, proto = request.method, request.uri, request.clientproto
        else:
            method = uri = proto = b"-"
        if self._json:
            referer = agent = None
        else:
            headers = request.requestHeaders
            referer = headers.getRawHeaders(b"referer")
            agent = headers.getRawHeaders(b"user-agent")
        self._sink.write(
            (
                now,
                (now - started) * 1000,
                request.getClientAddress(),
                method,
                uri,
                proto,
                status,
                request.sentLength,
                referer[-1] if referer else None,
                agent[-1] if agent else None,
                request_id,
                ended,
                client_request_id,
            )
        )

    def format_entries(self, entries: list[Any]) -> str:
        """The lines of entries `record` made, each ended by a newline."""
        if self._json:
            return "".join([self._json_line(entry) for entry in entries])
        # One loop for the turn's lines: a call per line costs as much as
        # a quarter of its formatting (issue 33).
        lines: list[str] = []
        append = lines.append
        second = self._second
        date = self._clf_date
        for (
            now,
            duration,
            address,
            method,
            uri,
            proto,
            status,
            sent,
            referer,
            agent,
            request_id,
            ended,
            client_request_id,
        ) in entries:
            if not second <= now < second + 1:
                self._stamp(int(now))
                second, date = self._second, self._clf_date
            tenths = int(duration * 10 + 0.5)
            # (The cache read inline: a call costs more than the lookup.)
            request_line = _request_lines.get((method, uri, proto)) or _request_line(
                method, uri, proto
            )
            append(
                f"{getattr(address, 'host', None) or '-'} - - {date} "
                f'"{request_line}" '
                f"{status} {sent or '-'} "
                f'"{_quoted(referer) if referer else "-"}" '
                f'"{_quoted(agent) if agent else "-"}" '
                f"request_id={request_id} duration_ms="
                f"{_TENTHS[tenths] if 0 <= tenths < _TABLED else f'{duration:.1f}'} "
                f"ended={ended}"
                # Sane by construction (`oxian_tw._requestid`): no escaping.
                f"{'' if client_request_id is None else ' client_request_id='}"
                f"{client_request_id or ''}\n"
            )
        return "".join(lines)

    def _json_line(self, entry: Any) -> str:
        (
            now,
            duration,
            address,
            method,
            uri,
            _,
            status,
            sent,
            _,
            _,
            request_id,
            ended,
            client_request_id,
        ) = entry
        if not self._second <= now < self._second + 1:
            self._stamp(int(now))
        fields = {
            "ts": f"{self._iso_second}.{int(now % 1 * 1000):03d}Z",
            "request_id": request_id,
            "method": method.decode("latin-1"),
            "path": _redacted(uri).decode("latin-1"),
            "status": status,
            "bytes": sent,
            "duration_ms": round(duration, 3),
            "client": getattr(address, "host", None) or "-",
            "ended": ended,
        }
        if client_request_id is not None:
            fields["client_request_id"] = client_request_id
        return dump_json(fields).decode("utf-8") + "\n"

    def _stamp(self, second: int) -> None:
        self._second = float(second)
        t = time.gmtime(second)
        self._clf_date = (
            f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"
        )
        self._iso_second = time.strftime("%Y-%m-%dT%H:%M:%S", t)

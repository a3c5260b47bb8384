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


def _quoted(raw: bytes | None) -> str:
    if not raw:
        return "-"
    text = raw.decode("latin-1")
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped.replace('"', '\\"')


# Module level: as a class attribute a Logger takes the class's name.
_access = Logger(namespace="oxian_tw.access")


#: A ``token`` query parameter's value (redacted from the log).
_TOKEN_PARAMETER = re.compile(rb"([?&])token=[^&#]*")


class LoggerSink:
    """Each line as one ``twisted.logger`` event (namespace ``oxian_tw.access``)."""

    def write(self, line: str) -> None:
        _access.info("{line}", line=line)

    def flush(self) -> None:
        """Nothing is held."""

    def close(self) -> None:
        """Nothing is held."""


class StreamSink:
    """
    Lines written to a text stream, batched: those of one reactor turn in
    one ``write`` and ``flush`` when the turn ends.

    :param stream: the text stream (``sys.stdout``).
    :param later: schedules a call for the end of the turn (the app's
        `oxian_tw._producer.Flusher`).
    """

    __slots__ = ("_stream", "_later", "_lines", "_closing")

    def __init__(self, stream: IO[str], later: Callable[[Any], None]) -> None:
        self._stream = stream
        self._later = later
        self._lines: list[str] = []
        self._closing = False

    def write(self, line: str) -> None:
        self._lines.append(line)
        if self._closing:
            self.flush()
        elif len(self._lines) == 1:
            self._later(self)

    def _turn_ended(self, now: float) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is held now."""
        lines, self._lines = self._lines, []
        if lines:
            lines.append("")
            try:
                self._stream.write("\n".join(lines))
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
    Formats access log lines and hands them to a sink.

    :param format: ``"combined"`` or ``"json"``.
    :param sink: a `LoggerSink` or `StreamSink`.
    """

    __slots__ = ("sink", "_json", "_second", "_clf_date", "_iso_second")

    def __init__(self, format: str, sink: Any) -> None:
        if format not in ("combined", "json"):
            raise ValueError(f"an access log format is combined or json: {format!r}")
        self.sink = sink
        self._json = format == "json"
        self._second = -1
        self._clf_date = ""
        self._iso_second = ""

    def record(
        self,
        request: Any,
        *,
        request_id: str,
        status: int,
        started: float,
        now: float,
        ended: str,
        request_line: bool = True,
        client_request_id: str | None = None,
    ) -> None:
        """
        Write the line of ``request``, whose response ended at ``now``;
        without ``request_line``, its method and path are not known yet.
        """
        second = int(now)
        if second != self._second:
            self._stamp(second)
        duration = (now - started) * 1000
        address = request.getClientAddress()
        client = getattr(address, "host", None) or "-"
        sent = request.sentLength
        if request_line:
            method, uri, proto = request.method, request.uri, request.clientproto
            if b"token=" in uri:
                # A stream token (?token=) is a credential: never logged.
                uri = _TOKEN_PARAMETER.sub(b"\\1token=REDACTED", uri)
        else:
            method = uri = proto = b"-"
        if self._json:
            line = dump_json(
                {
                    "ts": f"{self._iso_second}.{int(now % 1 * 1000):03d}Z",
                    "request_id": request_id,
                    "method": method.decode("latin-1"),
                    "path": uri.decode("latin-1"),
                    "status": status,
                    "bytes": sent,
                    "duration_ms": round(duration, 3),
                    "client": client,
                    "ended": ended,
                    **(
                        {"client_request_id": client_request_id}
                        if client_request_id is not None
                        else {}
                    ),
                }
            ).decode("utf-8")
        else:
            headers = request.requestHeaders
            referer = headers.getRawHeaders(b"referer")
            agent = headers.getRawHeaders(b"user-agent")
            line = (
                f'{client} - - {self._clf_date} "{_quoted(method)} '
                f'{_quoted(uri)} {_quoted(proto)}" '
                f"{status} {sent or '-'} "
                f'"{_quoted(referer[-1] if referer else None)}" '
                f'"{_quoted(agent[-1] if agent else None)}" '
                f"request_id={request_id} duration_ms={duration:.1f} ended={ended}"
            )
            if client_request_id is not None:
                # Sane by construction (`oxian_tw._requestid`): no escaping.
                line += f" client_request_id={client_request_id}"
        self.sink.write(line)

    def _stamp(self, second: int) -> None:
        self._second = second
        t = time.gmtime(second)
        self._clf_date = (
            f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"
        )
        self._iso_second = time.strftime("%Y-%m-%dT%H:%M:%S", t)

# -*- test-case-name: tests.test_response -*-
"""
``ctx.response``: the per-request response controller, the `Response` value
type, and the one ladder that turns a handler's result into bytes (SPEC §3,
§4).

The controller is the single owner of "has this response been committed":
once ``send`` (or the handler's result, or an error) has written the head,
nothing else writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.iweb import IRequest

from ._config import Settings
from ._context import header_value
from ._errors import StreamClosed, error_body, error_response, http_status_of
from ._eventstream import (
    SLOW_CONSUMER_POLICIES,
    EventStream,
    limit_unacknowledged,
)
from ._files import UNSATISFIABLE, byte_range, not_modified, resolve
from ._hub import Hub, check_channel
from ._producer import Stream, as_bytes
from ._registry import StreamRegistry
from .sse import encode_retry

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
BYTES_TYPE = "application/octet-stream"


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, rejecting NaN and infinities (not JSON)."""
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def encode_body(value: Any) -> tuple[str | None, bytes]:
    """
    A handler's return value as ``(default content type, bytes)``.

    :raises TypeError: for values with no HTTP form (they become a 500).
    """
    if value is None:
        return None, b""
    if isinstance(value, str):
        return TEXT_TYPE, value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTES_TYPE, bytes(value)
    if isinstance(value, dict | list | tuple | int | float | bool):
        try:
            return JSON_TYPE, dump_json(value)
        except ValueError as exc:
            raise TypeError(f"cannot encode the result as JSON: {exc}") from exc
    raise TypeError(
        f"a handler returned {type(value).__name__!r}, which has no HTTP form"
    )


def _check_status(status: Any) -> int:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not 100 <= status <= 599:
        raise ValueError(f"status {status} is not between 100 and 599")
    return status


def _header_items(headers: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in (headers or {}).items()]


# ``sse(ping=...)`` left out: the app's ``--ping`` applies.
_APP_PING: Any = object()


@attrs.frozen
class Response:
    """
    A complete response a handler can return (or pass to ``send``): exactly
    this status, these headers (over those already set) and this body,
    encoded like a return value.
    """

    body: Any = None
    status: int = attrs.field(default=200, validator=lambda _i, _a, v: _check_status(v))
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=dict)


class ResponseController:
    """
    ``ctx.response``: sets the status and headers of the pending response,
    commits it at once (`send`), or streams it (`stream`, `pipe`,
    `send_file`).

    :param request: the ``twisted.web`` request.
    :param settings: the app's settings (limits, ``debug``, heartbeats).
    :param streams: the app's registry of SSE streams.
    :param hub: the app's hub, for ``sse(channels=...)``.
    :param request_id: the request's id, for log lines.
    :param clock: the app's clock.
    :ivar route: the matched route pattern, set by the app once known.
    """

    _log = Logger()
    __slots__ = (
        "route",
        "committed",
        "abandoned",
        "_request",
        "_settings",
        "_debug",
        "_streams",
        "_hub",
        "_request_id",
        "_clock",
        "_status",
        "_headers",
        "_stream",
        "_sse",
        "_handler",
    )

    def __init__(
        self,
        request: IRequest,
        *,
        settings: Settings,
        streams: StreamRegistry,
        hub: Hub,
        request_id: str,
        clock: IReactorTime,
    ) -> None:
        self._request = request
        self._settings = settings
        self._debug = settings.debug
        self._streams = streams
        self._hub = hub
        self._request_id = request_id
        self._clock = clock
        self.route: str | None = None
        self._status = 200
        self._headers: dict[str, tuple[str, str]] = {}
        self._stream: Stream | None = None
        self._sse: EventStream | None = None
        self._handler: Deferred[Any] | None = None
        self.committed = False
        #: The response can no longer reach the client: it left, the
        #: connection was aborted, or a HEAD response is complete.
        self.abandoned = False

    def status(self, code: int) -> None:
        """Set the status of the pending response."""
        self._status = _check_status(code)

    def headers(self, headers: Mapping[str, Any]) -> None:
        """Set (replace) headers of the pending response; names are case-insensitive."""
        for name, value in _header_items(headers):
            self._headers[name.lower()] = (name, value)

    def redirect(self, url: str, status: int = 302) -> None:
        """Set the status and ``Location``; the handler's result is still the body."""
        self.status(status)
        self.headers({"Location": url})

    def send(
        self,
        body: Any = None,
        status: int | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """
        Commit the response now with ``body`` (encoded like a return value).
        The handler's later return value is then ignored; a second ``send``
        is ignored with a warning.
        """
        if self.committed:
            self._log.warn(
                "response.send() called after the response was committed; "
                "ignored (request {request_id})",
                request_id=self._request_id,
            )
            return
        if status is not None:
            self.status(status)
        if headers:
            self.headers(headers)
        self._commit_value(body)

    def stream(
        self,
        init: Any = None,
        /,
        *,
        status: int | None = None,
        headers: Mapping[str, Any] | None = None,
        keep_open: bool = False,
    ) -> Any:
        """
        Open the streamed response and return its `Stream`, or, given a
        chunk (``str`` or bytes-like), write it (opening with defaults first
        if needed) and return the write's Deferred.

        ``init`` may be ``{"status": ..., "headers": {...}, "keep_open":
        ...}``. Defaults: ``Content-Type: text/plain; charset=utf-8``,
        ``Cache-Control: no-cache, no-transform``, ``X-Accel-Buffering:
        no``. The body is chunked unless ``Content-Length`` was set.

        :raises StreamClosed: when the client already left.
        :raises RuntimeError: when the response was already sent.
        """
        if init is not None and not isinstance(init, Mapping):
            chunk = as_bytes(init)
            return self._open_stream().write(chunk)
        if init:
            unknown = set(init) - {"status", "headers", "keep_open"}
            if unknown:
                raise TypeError(f"unknown stream options: {sorted(unknown)}")
            status = init.get("status", status)
            headers = {**init.get("headers", {}), **(headers or {})}
            keep_open = init.get("keep_open", keep_open)
        return self._open_stream(status, headers, keep_open)

    def sse(
        self,
        retry: int | None = None,
        keep_open: bool = True,
        headers: Mapping[str, Any] | None = None,
        status: int = 200,
        ping: Any = _APP_PING,
        slow_consumer: str = "disconnect",
        channels: Iterable[str] = (),
    ) -> EventStream:
        """
        Open a Server-Sent Events response and return its `EventStream`.

        Headers: ``Content-Type: text/event-stream; charset=utf-8``,
        ``Cache-Control: no-cache, no-transform``, ``X-Accel-Buffering:
        no``, then ``headers``. ``retry`` (ms) is sent at once.

        :param keep_open: stay open after the handler finishes (until
            ``close()``, disconnect or shutdown); ``False`` closes the
            stream when the handler finishes.
        :param ping: seconds of silence before a ``:`` heartbeat; the app's
            ``--ping`` when left out, ``None`` for none.
        :param slow_consumer: past the ``--sse-budget`` of unsent bytes,
            ``"disconnect"`` the client or ``"drop"`` the event.
        :param channels: hub channels to subscribe to at once
            (`EventStream.subscribe`), resuming from the client's
            ``Last-Event-ID``.
        :raises HttpError: ``503`` with ``Retry-After`` at ``--max-streams``
            or during shutdown.
        :raises StreamClosed: when the client already left.
        :raises RuntimeError: when the response was already sent.
        """
        if slow_consumer not in SLOW_CONSUMER_POLICIES:
            raise ValueError(
                f"slow_consumer must be one of {SLOW_CONSUMER_POLICIES}, "
                f"not {slow_consumer!r}"
            )
        if ping is _APP_PING:
            ping = self._settings.ping or None
        elif ping is not None and (
            isinstance(ping, bool) or not isinstance(ping, int | float) or ping <= 0
        ):
            raise ValueError(f"ping must be a number of seconds > 0 or None: {ping!r}")
        opening = b"" if retry is None else encode_retry(retry)
        channels = list(channels)
        for channel in channels:
            check_channel(channel)
        if self._sse is not None:
            raise RuntimeError("sse() was already called for this response")
        if self.committed:
            raise RuntimeError("the response was already sent")
        if self.abandoned:
            raise StreamClosed("the client went away")
        self._streams.admit()
        self.status(status)
        self._headers.pop("content-length", None)
        self.headers(dict(_SSE_DEFAULTS))
        self.headers(headers or {})
        request = self._request
        limit_unacknowledged(request, self._settings.write_timeout)
        stream = self._start_stream(keep_open, events=True)
        last_event_id = header_value(request, b"last-event-id")
        if last_event_id is None:
            last_event_id = _query_value(request, b"lastEventId")
        sse = self._sse = EventStream(
            stream,
            clock=self._clock,
            registry=self._streams,
            hub=self._hub,
            route=self.route or request.path.decode("latin-1"),
            request_id=self._request_id,
            budget=self._settings.sse_budget,
            slow_consumer=slow_consumer,
            ping=ping,
            last_event_id=last_event_id,
        )
        self._streams.add(sse)
        if opening:
            stream.write(opening)
        if channels:
            sse.subscribe(*channels)
        return sse

    def pipe(self, source: Any) -> Deferred[None]:
        """
        Stream ``source`` with backpressure: a file object (read block by
        block, closed at the end), an iterable or an async iterable of
        chunks. Opens the stream with defaults if needed.
        """
        return self._open_stream().pipe(source)

    def send_file(
        self,
        path: str | os.PathLike[str],
        root: str | os.PathLike[str],
        *,
        headers: Mapping[str, Any] | None = None,
    ) -> Deferred[None]:
        """
        Serve the file ``path`` from inside ``root``: ``Content-Length``,
        ``Last-Modified``, ``ETag``, ``If-None-Match``/``If-Modified-Since``
        (``304``), a single ``Range`` (``206``, ``416``) and ``HEAD``. The
        file is read block by block at the client's pace. The response ends
        with the file, whenever the handler returns.

        :raises HttpError: ``403`` for a path outside ``root``, ``404`` for
            a missing file.
        :raises RuntimeError: when the response was already sent or streamed.
        """
        if self.committed:
            raise RuntimeError("the response was already sent")
        info = resolve(root, path)
        request = self._request
        self.headers({"Content-Type": info.content_type, **(headers or {})})
        self.headers(
            {
                "ETag": info.etag,
                "Last-Modified": info.last_modified,
                "Accept-Ranges": "bytes",
            }
        )
        if not_modified(
            info,
            header_value(request, b"if-none-match"),
            header_value(request, b"if-modified-since"),
        ):
            self._headers.pop("content-type", None)
            self._status = 304
            self._commit(b"")
            return succeed(None)
        span = byte_range(
            info, header_value(request, b"range"), header_value(request, b"if-range")
        )
        if span == UNSATISFIABLE:
            self.error(
                416,
                error_body(416, "Range Not Satisfiable"),
                {"Content-Range": f"bytes */{info.size}"},
            )
            return succeed(None)
        first, last = (0, info.size - 1) if span is None else span
        if span is not None:
            self._status = 206
            self.headers({"Content-Range": f"bytes {first}-{last}/{info.size}"})
        self.headers({"Content-Length": str(last - first + 1)})
        stream = self._start_stream(keep_open=True)
        if stream.closed or request.method == b"HEAD":
            return succeed(None)
        file = open(info.path, "rb")  # the reader closes it
        file.seek(first)
        d = stream.pull(file, last - first + 1)
        d.addCallback(lambda _: stream.close())
        return d

    # The hand-offs below are called by the app, never by handlers.

    def attach(self, handler: Deferred[Any]) -> None:
        """
        Follow the handler's Deferred: commit its result or error, close the
        stream when it finishes (unless ``keep_open``), and cancel it when
        the client leaves.
        """
        self._handler = handler
        handler.addCallback(self._handler_returned)
        handler.addErrback(self._handler_failed)
        if self.abandoned:
            self._cancel_handler()

    def connection_lost(self, failure: Failure | None = None) -> None:
        """The client left: end the stream and cancel the handler."""
        if self._stream is not None:
            self._stream.lost()
        else:
            self._abandon(immediate=True)

    def finish_with(self, result: Any) -> None:
        """Commit the handler's result unless the response is already out."""
        if self.committed or self.abandoned:
            return
        if isinstance(result, Response):
            self.status(result.status)
            self.headers(result.headers)
            result = result.body
        self._commit_value(result)

    def fail(self, failure: Failure) -> None:
        """
        Answer with the error body for ``failure``; once the response is
        committed (or the client left), only log it.
        """
        exc = failure.value
        status, headers, body = error_response(exc, debug=self._debug)
        if http_status_of(exc) is None:
            self._log.failure(
                "Unhandled error in handler (request {request_id})",
                failure,
                request_id=self._request_id,
            )
        elif status >= 500:
            # Raised on purpose (a 503 when full, say): no traceback.
            self._log.warn(
                "{status}: {error} (request {request_id})",
                status=status,
                error=body["error"]["message"],
                request_id=self._request_id,
            )
        if self.committed or self.abandoned:
            if status < 500:
                self._log.info(
                    "{status} raised after the response was committed "
                    "(request {request_id})",
                    status=status,
                    request_id=self._request_id,
                )
            return
        self.error(status, body, headers)

    def error(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """Commit an error: JSON whatever content type the handler had set."""
        self._headers.pop("content-type", None)
        self._status = status
        self.headers(headers or {})
        self._commit_value(body)

    def _handler_returned(self, result: Any) -> None:
        self._handler = None
        if self._stream is None:
            self.finish_with(result)
        elif not self._stream.keep_open:
            self._stream.close()

    def _handler_failed(self, failure: Failure) -> None:
        self._handler = None
        broken = self.abandoned or (self._stream is not None and self._stream.broken)
        if broken and failure.check(CancelledError, StreamClosed):
            # We stopped the handler because its client left: expected.
            return
        if self._sse is not None and not broken:
            _, _, body = error_response(failure.value, debug=self._debug)
            if http_status_of(failure.value) is None:
                self._log.failure(
                    "Handler failed after its SSE stream opened; sent an error "
                    "event and closed (request {request_id})",
                    failure,
                    request_id=self._request_id,
                )
            else:
                self._log.info(
                    "{error!r} raised after the SSE stream opened; sent an "
                    "error event and closed (request {request_id})",
                    error=body["error"]["message"],
                    request_id=self._request_id,
                )
            self._sse.fail(body)
            return
        if self._stream is not None and not broken:
            self._log.failure(
                "Handler failed after its stream started; connection aborted "
                "(request {request_id})",
                failure,
                request_id=self._request_id,
            )
            self._stream.abort()
            return
        self.fail(failure)

    def _abandon(self, immediate: bool) -> None:
        if self.abandoned:
            return
        self.abandoned = True
        if immediate:
            self._cancel_handler()
        else:
            # Cancelling a coroutine while it runs has no effect.
            self._clock.callLater(0, self._cancel_handler)

    def _cancel_handler(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()

    def _open_stream(
        self,
        status: int | None = None,
        headers: Mapping[str, Any] | None = None,
        keep_open: bool = False,
    ) -> Stream:
        if self._stream is not None:
            if status is not None or headers:
                self._log.warn(
                    "response.stream() options ignored: the stream is already "
                    "open (request {request_id})",
                    request_id=self._request_id,
                )
            return self._stream
        if status is not None:
            self.status(status)
        self.headers(headers or {})
        for name, value in _STREAM_DEFAULTS:
            if name.lower() not in self._headers:
                self.headers({name: value})
        return self._start_stream(keep_open)

    def _start_stream(self, keep_open: bool, *, events: bool = False) -> Stream:
        if self.abandoned:
            raise StreamClosed("the client went away")
        if self.committed:
            raise RuntimeError("the response was already sent")
        self.committed = True
        self._apply_head()
        stream = self._stream = Stream(
            self._request,
            # An event stream bounds its queue itself (its budget).
            buffer_limit=None if events else self._settings.buffer_limit,
            request_id=self._request_id,
            keep_open=keep_open,
            on_lost=self._abandon,
        )
        if self._request.method == b"HEAD":
            # Headers are out; stop the handler once it has yielded.
            self._clock.callLater(0, stream.lost)
        return stream

    def _commit_value(self, value: Any) -> None:
        content_type, payload = encode_body(value)
        if content_type is not None and "content-type" not in self._headers:
            self.headers({"Content-Type": content_type})
        self._commit(payload)

    def _apply_head(self) -> None:
        request = self._request
        request.setResponseCode(self._status)
        for name, value in self._headers.values():
            request.setHeader(name, value)
        # The request has them now; a long-lived stream need not keep two.
        self._headers = {}

    def _commit(self, payload: bytes) -> None:
        self.committed = True
        if self.abandoned:
            return
        request = self._request
        self._apply_head()
        if self._status in NO_BODY_CODES:
            request.responseHeaders.removeHeader(b"content-type")
        else:
            request.setHeader(b"content-length", b"%d" % len(payload))
            request.write(payload)
        request.finish()


# Tell caches and proxies (nginx) not to hold a streamed body back.
_NO_BUFFERING = (
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
)
_STREAM_DEFAULTS = (("Content-Type", TEXT_TYPE), *_NO_BUFFERING)
_SSE_DEFAULTS = (("Content-Type", "text/event-stream; charset=utf-8"), *_NO_BUFFERING)


def _query_value(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name) if request.args else None
    return values[0].decode("utf-8", "replace") if values else None

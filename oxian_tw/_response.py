# -*- test-case-name: tests.test_app -*-
"""
``ctx.response``: the response controller, and the one owner of its
request's life.

One `ResponseController` per request holds everything that decides how the
response goes: whether anything was committed, the handler's Deferred (if
the handler is asynchronous), the client leaving, the stream (if one was
opened), the failure policy, and the end of the request (the access log
line, the app's count of requests in flight). Nothing else finishes a
request, and nothing else reacts to its disconnect.

A request passes through these states: *pending* (nothing sent), *open*
(a streamed body is being sent), *done* (the response is complete, or its
stream ended) and *gone* (the client left before the response was
complete). A synchronous handler's request goes from pending to done inside
``render``, without a Deferred; the client's departure is watched (one
``notifyFinish``) only while something asynchronous is under way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, HTTPChannel
from twisted.web.iweb import IRequest

from ._context import header_text, header_value
from ._errors import StreamClosed, error_body, error_response, http_status_of
from ._eventstream import (
    DEFAULT_POLICY,
    SLOW_CONSUMER_POLICIES,
    EventStream,
)
from ._fastpath import limit_unacknowledged
from ._files import UNSATISFIABLE, byte_range, not_modified, resolve
from ._invoke import is_deferred
from ._producer import HeadStream, Stream, as_bytes
from ._requestid import request_ids
from ._results import Response, check_status, encode_body
from .hub._channels import channel_names, check_history, presence_json
from .sse import encode_retry

if TYPE_CHECKING:
    from ._app import OxianApp

# ``sse(ping=...)`` left out: the app's ``--ping`` applies.
_APP_PING: Any = object()

_PENDING, _OPEN, _DONE, _GONE = "pending", "open", "done", "gone"

# Tell caches and proxies (nginx) not to hold a streamed body back.
_NO_BUFFERING = (
    (b"Cache-Control", b"no-cache, no-transform"),
    (b"X-Accel-Buffering", b"no"),
)
_STREAM_DEFAULTS = ((b"Content-Type", b"text/plain; charset=utf-8"), *_NO_BUFFERING)
_SSE_DEFAULTS = (
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    *_NO_BUFFERING,
)


#: Seconds at most an SSE response's head waits for its channels to be
#: live (one round trip to Redis; longer only while it is unreachable).
HEAD_HOLD = 5.0

#: Seconds of one synchronous stretch of serving a request (the pipeline,
#: a ``def`` handler, an ``async def`` handler up to its first ``await``)
#: past which a warning names the route.
BLOCKING_WARNING = 0.5
#: What the blocking check measures with (real time, not the app's clock).
_wall_clock = time.perf_counter


class ResponseController:
    """
    ``ctx.response``: sets the status and headers of the pending response,
    commits it at once (`send`), or streams it (`stream`, `pipe`,
    `send_file`, `sse`). ``app.response(request)`` gives one for any
    ``twisted.web`` request.
    """

    _log = Logger()
    __slots__ = (
        "_app",
        "_request",
        "_request_id",
        "_client_request_id",
        "_route",
        "_state",
        "_stream",
        "_sse",
        "_handler",
        "_started",
        "_watching",
        "_foreign",
    )

    def __init__(self, app: OxianApp, request: IRequest) -> None:
        self._app = app
        self._request: Any = request
        request_id, self._client_request_id = request_ids(request, app.trusted_proxies)
        self._request_id = request_id
        request.responseHeaders.setRawHeaders(
            b"X-Request-Id", [request_id.encode("ascii")]
        )
        self._route: str | None = None
        self._state = _PENDING
        self._stream: Stream | None = None
        self._sse: EventStream | None = None
        self._handler: Deferred[Any] | None = None
        #: When the app began serving it (``None``: not yet).
        self._started: float | None = None
        self._watching = False
        #: Another framework serves the request (``app.response(request)``).
        self._foreign = False

    def status(self, code: int) -> None:
        """Set the status of the pending response."""
        request = self._request
        if check_status(code) != request.code:
            # (Setting the default 200 again would give each open stream's
            # request two more attributes: see `oxian_tw._site.OxianRequest`.)
            request.setResponseCode(code)

    def headers(self, headers: Mapping[str, Any]) -> None:
        """Set (replace) headers of the pending response; names are case-insensitive."""
        set_header = self._request.responseHeaders.setRawHeaders
        for name, value in headers.items():
            set_header(str(name), [str(value)])

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
        if self._state is not _PENDING:
            if self._state is not _GONE:
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
        self._commit(body)

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
        slow_consumer: Any = DEFAULT_POLICY,
        channels: Iterable[str] = (),
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
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
        :param slow_consumer: past the ``--sse-budget`` of unsent bytes:
            for hub events ``"lag"`` (the default: stop taking live events,
            be caught up from history once the socket drained) or
            ``"disconnect"``; for ``send()`` events ``"disconnect"`` (the
            default) or ``"drop"`` (discard it and count it).
        :param channels: hub channels to subscribe to at once
            (`EventStream.subscribe`), resuming from the client's
            ``Last-Event-ID``.
        :param history: without a ``Last-Event-ID``, first send the last
            ``history`` events kept of each channel (``1``: the latest
            value).
        :param presence: JSON-able info (at most 1 KiB encoded): the stream
            is present on ``channels`` while it is open
            (``hub.presence(channel)``).
        :param presence_events: also publish ``join``/``leave`` events with
            that info on ``channels``.
        :raises HttpError: ``503`` with ``Retry-After`` at ``--max-streams``
            or during shutdown.
        :raises StreamClosed: when the client already left.
        :raises RuntimeError: when the response was already sent.
        """
        if slow_consumer is not DEFAULT_POLICY and (
            slow_consumer not in SLOW_CONSUMER_POLICIES
        ):
            raise ValueError(
                f"slow_consumer must be one of {SLOW_CONSUMER_POLICIES}, "
                f"not {slow_consumer!r}"
            )
        app = self._app
        settings = app.settings
        if ping is _APP_PING:
            ping = settings.ping or None
        elif ping is not None and (
            isinstance(ping, bool) or not isinstance(ping, int | float) or ping <= 0
        ):
            raise ValueError(f"ping must be a number of seconds > 0 or None: {ping!r}")
        opening = b"" if retry is None else encode_retry(retry)
        channels = channel_names(channels)
        check_history(history)
        if presence is not None:
            presence_json(presence)
        self._check_open()
        app.streams.admit()
        self.status(status)
        request = self._request
        response_headers = request.responseHeaders
        response_headers.removeHeader(b"content-length")
        for name, value in _SSE_DEFAULTS:
            response_headers.setRawHeaders(name, [value])
        if headers:
            self.headers(headers)
        limit_unacknowledged(
            getattr(request.channel, "transport", None), settings.write_timeout
        )
        # An event stream bounds what it holds itself (its budget). With
        # channels its head waits until they are live here: a client that
        # sees the response head gets every event published after that.
        stream = self._start_stream(
            keep_open, buffer_limit=None, hold_head=bool(channels)
        )
        last_event_id = header_text(request, b"last-event-id")
        if last_event_id is None:
            last_event_id = _query_value(request, b"lastEventId")
        sse = self._sse = EventStream(
            stream,
            clock=app.clock,
            subscribe_to=app.hub.subscribe,
            route=self._route or request.path.decode("latin-1"),
            request_id=self._request_id,
            budget=settings.sse_budget,
            slow_consumer=slow_consumer,
            ping=ping,
            last_event_id=last_event_id,
        )
        app.streams.add(sse)
        if opening:
            stream._push(opening)
        if channels:
            joined = sse.subscribe(
                *channels,
                history=history,
                presence=presence,
                presence_events=presence_events,
            )
            self._release_when(stream, joined)
        return sse

    def _release_when(self, stream: Stream, joined: Deferred[None]) -> None:
        """
        Send the held head once ``joined`` fires, or after `HEAD_HOLD`
        seconds whatever happens (the hub unreachable: heartbeats go on).
        """
        if joined.called:
            stream._release_head()
            return
        cap = self._app.clock.callLater(HEAD_HOLD, stream._release_head)

        def release(_: Any) -> None:
            if cap.active():
                cap.cancel()
            stream._release_head()

        joined.addBoth(release)

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
        if self._state is not _PENDING:
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
            request.setResponseCode(304)
            self._commit(None)
            return succeed(None)
        span = byte_range(
            info, header_value(request, b"range"), header_value(request, b"if-range")
        )
        if span is UNSATISFIABLE:
            self._error(
                416,
                error_body(416, "Range Not Satisfiable"),
                {"Content-Range": f"bytes */{info.size}"},
            )
            return succeed(None)
        first, last = (0, info.size - 1) if span is None else span
        if span is not None:
            request.setResponseCode(206)
            self.headers({"Content-Range": f"bytes {first}-{last}/{info.size}"})
        self.headers({"Content-Length": str(last - first + 1)})
        stream = self._start_stream(
            keep_open=True, buffer_limit=self._app.settings.buffer_limit
        )
        if stream.closed:
            return succeed(None)
        file = open(info.path, "rb")  # the reader closes it
        file.seek(first)
        d = stream._pull_file(file, last - first + 1)
        d.addCallback(lambda _: stream.close())
        return d

    def __repr__(self) -> str:
        return f"<ResponseController {self._state} request {self._request_id}>"

    def _log_ids(self) -> dict[str, Any]:
        """
        The fields naming this request in a log line whose format ends
        ``(request {request_id}{also})``: the client's own id is said too.
        """
        client_id = self._client_request_id
        return {
            "request_id": self._request_id,
            "client_request_id": client_id,
            "also": "" if client_id is None else f", client's id {client_id}",
        }

    # The app's side: serving a request, its handler, its end.

    @property
    def _settled(self) -> bool:
        """Whether the response was committed, or its client left."""
        return self._state is not _PENDING

    def _begin(self) -> None:
        """Count the request as in flight until its response ends."""
        if self._started is None:
            self._started = self._app._request_began()

    def _serve(self, run: Any) -> None:
        """
        Serve the request: ``run(self)`` gives the handler's result, or a
        Deferred of it, or raises.
        """
        self._started = self._app._request_began()
        began = _wall_clock()
        try:
            result = run(self)
        except Exception:
            self._check_blocking(_wall_clock() - began)
            self._handler_failed(Failure())
            return
        blocked = _wall_clock() - began
        if blocked > BLOCKING_WARNING:
            self._check_blocking(blocked)
        if is_deferred(result):
            if not result.called:
                self._handler = result
                self._watch()
            result.addCallbacks(self._handler_returned, self._handler_failed)
        else:
            self._handler_returned(result)

    def _check_blocking(self, blocked: float) -> None:
        """Warn when serving the request held the reactor too long."""
        if blocked > BLOCKING_WARNING:
            self._log.warn(
                "Route {route} blocked the reactor for {seconds:.2f} s "
                "(request {request_id}); no other client was served meanwhile. "
                "Handlers run on the reactor thread: run blocking calls with "
                "deferToThread (docs/handlers.md)",
                route=self._route or self._request.path.decode("latin-1"),
                seconds=blocked,
                request_id=self._request_id,
            )

    def _watch(self) -> None:
        """Learn when the client leaves (while something is under way)."""
        if not self._watching:
            self._watching = True
            self._request.notifyFinish().addErrback(self._client_left)

    def _client_left(self, failure: Failure) -> None:
        if self._stream is not None:
            self._stream._lost()
        elif self._state is _PENDING:
            self._state = _GONE
            self._cancel_handler()
            self._ended("client_gone")

    def _handler_returned(self, result: Any) -> None:
        self._handler = None
        if self._stream is not None:
            if not self._stream._keep_open:
                self._stream.close()
            return
        if self._state is not _PENDING:
            return
        try:
            if isinstance(result, Response):
                self.status(result.status)
                self.headers(result.headers)
                result = result.body
            self._commit(result)
        except Exception:
            self._fail(Failure())

    def _handler_failed(self, failure: Failure) -> None:
        self._handler = None
        stream = self._stream
        broken = self._state is _GONE or (stream is not None and stream._broken)
        if broken and failure.check(CancelledError, StreamClosed):
            # We stopped the handler because its client left: expected.
            return
        if self._sse is not None and not broken:
            error = failure.value or Exception(failure.getErrorMessage())
            _, _, body = error_response(error, debug=self._app.settings.debug)
            if http_status_of(error) is None:
                self._log.failure(
                    "Handler failed after its SSE stream opened; sent an error "
                    "event and closed (request {request_id}{also})",
                    failure,
                    **self._log_ids(),
                )
            else:
                self._log.info(
                    "{error!r} raised after the SSE stream opened; sent an "
                    "error event and closed (request {request_id}{also})",
                    error=body["error"]["message"],
                    **self._log_ids(),
                )
            self._sse._fail(body)
            return
        if stream is not None and not broken:
            self._log.failure(
                "Handler failed after its stream started; connection aborted "
                "(request {request_id}{also})",
                failure,
                **self._log_ids(),
            )
            stream._abort()
            return
        self._fail(failure)

    def _fail(self, failure: Failure) -> None:
        """
        Answer with the error body for ``failure``; once the response is
        committed (or the client left), only log it.
        """
        exc = failure.value or Exception(failure.getErrorMessage())
        status, headers, body = error_response(exc, debug=self._app.settings.debug)
        if http_status_of(exc) is None:
            self._log.failure(
                "Unhandled error in handler (request {request_id}{also})",
                failure,
                **self._log_ids(),
            )
        elif status >= 500:
            # Raised on purpose (a 503 when full, say): no traceback.
            self._log.warn(
                "{status}: {error} (request {request_id}{also})",
                status=status,
                error=body["error"]["message"],
                **self._log_ids(),
            )
        if self._state is not _PENDING:
            if status < 500 and self._state is not _GONE:
                self._log.info(
                    "{status} raised after the response was committed "
                    "(request {request_id})",
                    status=status,
                    request_id=self._request_id,
                )
            return
        self._error(status, body, headers)

    def _error(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """Commit an error: JSON whatever content type the handler had set."""
        request = self._request
        request.responseHeaders.removeHeader(b"content-type")
        request.setResponseCode(status)
        if headers:
            self.headers(headers)
        self._commit(body)

    def _stream_ended(self, reason: str, stop_handler: bool, immediate: bool) -> None:
        """
        The stream ended (`oxian_tw._accesslog.ENDINGS` says how); with
        ``stop_handler`` the handler, if still running, is cancelled: at
        once, or (``immediate`` false: it may be running now) next turn.
        """
        self._state = _GONE if reason == "client_gone" else _DONE
        if self._sse is not None:
            self._sse._ended()
        if stop_handler and self._handler is not None:
            if immediate:
                self._cancel_handler()
            else:
                # Cancelling a coroutine while it runs has no effect.
                self._app.clock.callLater(0, self._cancel_handler)
        self._ended(reason)

    def _ended(self, how: str) -> None:
        """The request is over: log it and tell the app."""
        started, self._started = self._started, None
        if started is not None:
            self._app._request_ended(self, started, how)

    def _cancel_handler(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()

    def _check_open(self) -> None:
        if self._state is _GONE:
            raise StreamClosed("the client went away")
        if self._state is not _PENDING:
            raise RuntimeError("the response was already sent")

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
        self._check_open()
        if status is not None:
            self.status(status)
        if headers:
            self.headers(headers)
        response_headers = self._request.responseHeaders
        for name, value in _STREAM_DEFAULTS:
            if not response_headers.hasHeader(name):
                response_headers.setRawHeaders(name, [value])
        return self._start_stream(keep_open, self._app.settings.buffer_limit)

    def _start_stream(
        self, keep_open: bool, buffer_limit: int | None, hold_head: bool = False
    ) -> Stream:
        self._check_open()
        request = self._request
        length = request.responseHeaders.getRawHeaders(b"content-length")
        if length is not None and (len(length) != 1 or not length[0].isdigit()):
            raise ValueError(f"Content-Length must be a number of bytes: {length!r}")
        self._begin()
        head_only = request.method == b"HEAD" or request.code in NO_BODY_CODES
        stream = (HeadStream if head_only else Stream)(
            request,
            self,
            flusher=self._app._flusher,
            buffer_limit=buffer_limit,
            request_id=self._request_id,
            keep_open=keep_open,
        )
        self._stream = stream
        self._state = _OPEN
        if self._foreign:
            request.finish = self._guarded_finish
        stream._start(hold_head and not head_only)
        if head_only:
            # The head is all there is; stop the handler once it has yielded.
            self._app.clock.callLater(0, stream._lost)
        elif not isinstance(request.channel, HTTPChannel):
            # An HTTP/1.1 connection that drops stops its producer (the
            # stream); an HTTP/2 stream tells only its request.
            self._watch()
        return stream

    def _guarded_finish(self) -> None:
        """
        ``request.finish`` while a stream answers a request another framework
        serves: Klein, say, finishes the request when its route returns
        ``NOT_DONE_YET``, which would end the body under the stream's
        writes. Only the stream's own finish counts.
        """
        stream = self._stream
        if stream is not None and not stream._ended:
            return
        request = self._request
        del request.finish
        if not request.finished:
            request.finish()

    def _commit(self, value: Any) -> None:
        """
        Send the whole response now, with ``value`` as its body (encoded
        as a handler's result), and end the request.

        :raises HttpError: ``500`` for a value with no HTTP form; nothing was
            sent.
        """
        content_type, payload = encode_body(value)
        request = self._request
        if self._started is None:
            self._started = self._app._request_began()
        self._state = _DONE
        if request.code in NO_BODY_CODES:
            request.responseHeaders.removeHeader(b"content-type")
        else:
            if content_type is not None:
                if payload:
                    # Twisted's first write adds it unless the handler set one.
                    request.defaultContentType = content_type
                elif not request.responseHeaders.hasHeader(b"content-type"):
                    # ...but leaves it off an empty body.
                    request.responseHeaders.setRawHeaders(
                        b"Content-Type", [content_type]
                    )
            request.responseHeaders.setRawHeaders(
                b"Content-Length", [b"%d" % len(payload)]
            )
            request.write(payload)
        request.finish()
        started, self._started = self._started, None
        self._app._request_ended(self, started, "complete")


def _query_value(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name) if request.args else None
    return values[0].decode("utf-8", "replace") if values else None

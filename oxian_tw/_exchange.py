# -*- test-case-name: tests.test_app,tests.test_exchange -*-
"""
`Exchange`: the one owner of a request's life.

One exchange per request holds everything that decides how the response
goes: its `Phase`, the handler while it runs (a coroutine, a Deferred or an
async iterator, driven and cancelled here), the client leaving, the stream
(if one was opened), the failure policy, and the end of the request (the
access log line, the app's count of requests in flight). Nothing else
finishes a request, and nothing else reacts to its disconnect.
``ctx.response`` (`oxian_tw._response.ResponseController`) is a thin façade
over it; opening an SSE response is `oxian_tw._sse_response`, serving a
file `oxian_tw._send_file`.

A synchronous handler's request goes from pending to done inside
``render``, without a Deferred; the client's departure is watched (one
``notifyFinish``) only while something asynchronous is under way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, HTTPChannel
from twisted.web.iweb import IRequest

from ._compression import (
    ENCODERS,
    MIN_PLAIN,
    Encoder,
    compress_whole,
    compressible,
    negotiate,
)
from ._coroutines import CANCELLED, drive
from ._errors import StreamClosed, error_body, error_response, http_status_of
from ._invoke import is_deferred
from ._phase import TRANSITIONS, Phase
from ._producer import NO_BUFFERING, CompressedStream, HeadStream, Stream
from ._requestid import request_ids
from ._response import ResponseController
from ._results import Response, check_status, encode_body
from ._streaming import is_async_iterable, pump_chunks, pump_events

if TYPE_CHECKING:
    from ._app import OxianApp
    from ._eventstream import EventStream
    from ._policy import RequestPolicy


#: Seconds of one synchronous stretch of serving a request (the pipeline,
#: a ``def`` handler, an ``async def`` handler up to its first ``await``)
#: past which a warning names the route.
BLOCKING_WARNING = 0.5
#: What the blocking check measures with (real time, not the app's clock).
_wall_clock = time.perf_counter

_STREAM_DEFAULTS = ((b"Content-Type", b"text/plain; charset=utf-8"), *NO_BUFFERING)


class Exchange:
    """
    One request and its response, from the handler's call to the access
    log line.

    :param app: the app serving it.
    :param request: the ``twisted.web`` request.
    :param foreign: another framework serves it (``app.response(request)``:
        a Klein route's, say); no handler of ours runs.

    :ivar phase: the `Phase`.
    :ivar route: the matched pattern, once the route is known.
    :ivar stream: the streamed body, once opened.
    :ivar sse: the event stream, once opened.
    """

    _log = Logger()
    __slots__ = (
        "app",
        "request",
        "request_id",
        "client_request_id",
        "route",
        "phase",
        "stream",
        "sse",
        "foreign",
        "policy",
        "_response",
        "_handler",
        "_started",
        "_watching",
    )

    def __init__(self, app: OxianApp, request: IRequest, foreign: bool = False) -> None:
        self.app = app
        self.request: Any = request
        self.request_id, self.client_request_id = request_ids(
            request, app.trusted_proxies
        )
        request.responseHeaders.setRawHeaders(
            b"X-Request-Id", [self.request_id.encode("ascii")]
        )
        self.route: str | None = None
        self.phase = Phase.PENDING
        self.stream: Stream | None = None
        self.sse: EventStream | None = None
        self.foreign = foreign
        #: The channel policy of its route (``channels.py``), or ``None``.
        self.policy: RequestPolicy | None = None
        self._response: ResponseController | None = None
        self._handler: Deferred[Any] | None = None
        #: When the app began serving it (``None``: not yet, or ended).
        self._started: float | None = None
        self._watching = False

    @property
    def response(self) -> ResponseController:
        """``ctx.response``: the façade handlers use."""
        response = self._response
        if response is None:
            response = self._response = ResponseController(self)
        return response

    @property
    def settled(self) -> bool:
        """Whether the response was committed, or its client left."""
        return self.phase is not Phase.PENDING

    def move(self, to: Phase) -> None:
        """
        Go to phase ``to``.

        :raises AssertionError: for a move `TRANSITIONS` does not allow.
        """
        if to not in TRANSITIONS[self.phase]:
            raise AssertionError(
                f"request {self.request_id}: {self.phase.name} -> {to.name}"
            )
        self.phase = to

    def __repr__(self) -> str:
        return f"<Exchange {self.phase.value} request {self.request_id}>"

    def log_ids(self) -> dict[str, Any]:
        """
        The fields naming this request in a log line whose format ends
        ``(request {request_id}{also})``: the client's own id is said too.
        """
        client_id = self.client_request_id
        return {
            "request_id": self.request_id,
            "client_request_id": client_id,
            "also": "" if client_id is None else f", client's id {client_id}",
        }

    # The pending response.

    def set_status(self, code: int) -> None:
        """Set the status of the pending response."""
        request = self.request
        if check_status(code) != request.code:
            # (Setting the default 200 again would give each open stream's
            # request two more attributes: see `oxian_tw._site.OxianRequest`.)
            request.setResponseCode(code)

    def set_headers(self, headers: Mapping[str, Any]) -> None:
        """Set (replace) headers of the pending response."""
        set_header = self.request.responseHeaders.setRawHeaders
        for name, value in headers.items():
            set_header(str(name), [str(value)])

    def check_open(self) -> None:
        """
        :raises StreamClosed: when the client already left.
        :raises RuntimeError: when the response was already sent.
        """
        if self.phase is Phase.GONE:
            raise StreamClosed("the client went away")
        if self.phase is not Phase.PENDING:
            raise RuntimeError("the response was already sent")

    # Serving: the handler, driven and supervised.

    def serve(self, run: Callable[[Exchange], Any]) -> None:
        """
        Serve the request: ``run(self)`` gives the handler's result (a value,
        an async iterator), a Deferred of it, or raises.
        """
        self._started = self.app._request_began()
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
            self._follow(result)
        else:
            self._handler_returned(result)

    def _follow(self, result: Any) -> None:
        """The handler gave ``result``: a value now, or a Deferred of one."""
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
                route=self.route or self.request.path.decode("latin-1"),
                seconds=blocked,
                request_id=self.request_id,
            )

    def _watch(self) -> None:
        """Learn when the client leaves (while something is under way)."""
        if not self._watching:
            self._watching = True
            self.request.notifyFinish().addErrback(self._client_left)

    def _client_left(self, failure: Failure) -> None:
        if self.stream is not None:
            self.stream._lost()
        elif self.phase is Phase.PENDING:
            self.move(Phase.GONE)
            self._cancel_handler()
            self._ended("client_gone")

    def _handler_returned(self, result: Any) -> None:
        self._handler = None
        if is_async_iterable(result) and self.phase is not Phase.DONE:
            self._iterate(result)
            return
        stream = self.stream
        if stream is not None:
            if not stream._keep_open:
                stream.close()
            return
        if self.phase is not Phase.PENDING:
            return
        try:
            if isinstance(result, Response):
                self.set_status(result.status)
                self.set_headers(result.headers)
                result = result.body
            self.commit(result)
        except Exception:
            self.fail(Failure())

    def _iterate(self, source: Any) -> None:
        """
        The handler returned an async iterator (SPEC §14): its items are
        events, when the client asked for an event stream or the handler
        opened one, else chunks; pulled at the client's pace, closed when
        the client leaves. The response ends with it.
        """
        if self.phase is Phase.GONE:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                drive(aclose())
            return
        try:
            sse = self.sse
            if sse is None and self.stream is None and _wants_events(self.request):
                sse = self.response.sse(keep_open=False)
            if sse is not None:
                pumped = drive(pump_events(sse, source))
            else:
                stream = self.stream or self.open_stream()
                pumped = drive(pump_chunks(stream, source))
        except Exception:
            self._handler_failed(Failure())
            return

        def ended(_: Any) -> None:
            current = self.stream
            if current is not None:
                current.close()

        pumped.addCallback(ended)
        self._follow(pumped)

    def _handler_failed(self, failure: Failure) -> None:
        self._handler = None
        stream = self.stream
        broken = self.phase is Phase.GONE or (stream is not None and stream._broken)
        if broken and failure.check(*CANCELLED, StreamClosed):
            # We stopped the handler because its client left: expected.
            return
        sse = self.sse
        if sse is not None and not broken:
            error = failure.value or Exception(failure.getErrorMessage())
            _, _, body = error_response(error, debug=self.app.settings.debug)
            if http_status_of(error) is None:
                self._log.failure(
                    "Handler failed after its SSE stream opened; sent an error "
                    "event and closed (request {request_id}{also})",
                    failure,
                    **self.log_ids(),
                )
            else:
                self._log.info(
                    "{error!r} raised after the SSE stream opened; sent an "
                    "error event and closed (request {request_id}{also})",
                    error=body["error"]["message"],
                    **self.log_ids(),
                )
            sse._fail(body)
            return
        if stream is not None and not broken:
            self._log.failure(
                "Handler failed after its stream started; connection aborted "
                "(request {request_id}{also})",
                failure,
                **self.log_ids(),
            )
            stream._abort()
            return
        self.fail(failure)

    def fail(self, failure: Failure) -> None:
        """
        Answer with the error body for ``failure``; once the response is
        committed (or the client left), only log it.
        """
        exc = failure.value or Exception(failure.getErrorMessage())
        status, headers, body = error_response(exc, debug=self.app.settings.debug)
        if http_status_of(exc) is None:
            self._log.failure(
                "Unhandled error in handler (request {request_id}{also})",
                failure,
                **self.log_ids(),
            )
        elif status >= 500:
            # Raised on purpose (a 503 when full, say): no traceback.
            self._log.warn(
                "{status}: {error} (request {request_id}{also})",
                status=status,
                error=body["error"]["message"],
                **self.log_ids(),
            )
        if self.phase is not Phase.PENDING:
            if status < 500 and self.phase is not Phase.GONE:
                self._log.info(
                    "{status} raised after the response was committed "
                    "(request {request_id})",
                    status=status,
                    request_id=self.request_id,
                )
            return
        self.error(status, body, headers)

    def error(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """Commit an error: JSON whatever content type the handler had set."""
        request = self.request
        request.responseHeaders.removeHeader(b"content-type")
        request.setResponseCode(status)
        if headers:
            self.set_headers(headers)
        self.commit(body)

    def refuse(self, status: int, message: str, headers: Mapping[str, str]) -> None:
        """Commit the error body for ``status`` with ``message``."""
        self.error(status, error_body(status, message), headers)

    def stream_ended(self, reason: str, stop_handler: bool, immediate: bool) -> None:
        """
        The stream ended (`oxian_tw._accesslog.ENDINGS` says how); with
        ``stop_handler`` the handler, if still running, is cancelled: at
        once, or (``immediate`` false: it may be running now) next turn.
        """
        self.move(Phase.GONE if reason == "client_gone" else Phase.DONE)
        if self.sse is not None:
            self.sse._ended()
        if stop_handler and self._handler is not None:
            if immediate:
                self._cancel_handler()
            else:
                # Cancelling a coroutine while it runs has no effect.
                self.app.clock.callLater(0, self._cancel_handler)
        self._ended(reason)

    def _ended(self, how: str) -> None:
        """The request is over: log it and tell the app."""
        started, self._started = self._started, None
        if started is not None:
            self.app._request_ended(self, started, how)

    def _cancel_handler(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()

    # Opening a stream; committing a whole response.

    def open_stream(
        self,
        status: int | None = None,
        headers: Mapping[str, Any] | None = None,
        keep_open: bool = False,
        compress: bool | None = None,
    ) -> Stream:
        """The streamed body, opened with the stream defaults if not yet."""
        if self.stream is not None:
            if status is not None or headers:
                self._log.warn(
                    "response.stream() options ignored: the stream is already "
                    "open (request {request_id})",
                    request_id=self.request_id,
                )
            return self.stream
        self.check_open()
        if status is not None:
            self.set_status(status)
        if headers:
            self.set_headers(headers)
        response_headers = self.request.responseHeaders
        for name, value in _STREAM_DEFAULTS:
            if not response_headers.hasHeader(name):
                response_headers.setRawHeaders(name, [value])
        return self.start_stream(
            keep_open, self.app.settings.buffer_limit, compress=compress
        )

    def start_stream(
        self,
        keep_open: bool,
        buffer_limit: int | None,
        hold_head: bool = False,
        compress: bool | None = None,
    ) -> Stream:
        """
        Start the response's body as a `Stream` with the headers set so far
        (``HEAD`` and bodiless statuses: a `HeadStream`; compressed: a
        `CompressedStream`, see `encoder`).

        :param hold_head: the head waits for ``stream._release_head()``.
        :param compress: compress the body if the client accepts it (None:
            as ``--compress`` says).
        """
        self.check_open()
        request = self.request
        length = request.responseHeaders.getRawHeaders(b"content-length")
        if length is not None and (len(length) != 1 or not length[0].isdigit()):
            raise ValueError(f"Content-Length must be a number of bytes: {length!r}")
        if self._started is None:
            self._started = self.app._request_began()
        head_only = request.method == b"HEAD" or request.code in NO_BODY_CODES
        encoder = None if head_only else self.encoder(compress)
        if encoder is not None:
            stream: Stream = CompressedStream(
                request,
                self,
                flusher=self.app._flusher,
                # The compressor's memory is part of what the stream may hold.
                buffer_limit=(
                    None
                    if buffer_limit is None
                    else max(buffer_limit - encoder.memory, 0)
                ),
                request_id=self.request_id,
                keep_open=keep_open,
                encoder=encoder,
            )
        else:
            stream = (HeadStream if head_only else Stream)(
                request,
                self,
                flusher=self.app._flusher,
                buffer_limit=buffer_limit,
                request_id=self.request_id,
                keep_open=keep_open,
            )
        self.stream = stream
        self.move(Phase.OPEN)
        if self.foreign:
            request.finish = self._guarded_finish
        stream._start(hold_head and not head_only)
        if head_only:
            # The head is all there is; stop the handler once it has yielded.
            self.app.clock.callLater(0, stream._lost)
        elif not isinstance(request.channel, HTTPChannel):
            # An HTTP/1.1 connection that drops stops its producer (the
            # stream); an HTTP/2 stream tells only its request.
            self._watch()
        return stream

    def encoder(self, compress: bool | None) -> Encoder | None:
        """
        The encoder of the body about to start (SPEC §17), or None: when
        compression is asked (``compress``, else ``--compress``), the body's
        type is worth it, it has no ``Content-Encoding`` or
        ``Content-Length`` of its own (``send_file`` has one) and the client
        accepts a coding. Sets ``Content-Encoding`` and ``Vary``.
        """
        if compress is None:
            compress = self.app.settings.compress
        if not compress:
            return None
        headers = self.request.responseHeaders
        if headers.hasHeader(b"content-encoding") or headers.hasHeader(
            b"content-length"
        ):
            return None
        content_type = headers.getRawHeaders(b"content-type")
        name = self._negotiated(content_type[0] if content_type else None)
        return None if name is None else ENCODERS[name]()

    def _negotiated(self, content_type: bytes | None) -> str | None:
        """The coding for a compressible body of ``content_type``; sets headers."""
        if not compressible(content_type):
            return None
        request = self.request
        # What is sent depends on Accept-Encoding, whatever it says this time.
        request.responseHeaders.addRawHeader(b"Vary", b"Accept-Encoding")
        name = negotiate(request.requestHeaders.getRawHeaders(b"accept-encoding"))
        if name is not None:
            request.responseHeaders.setRawHeaders(
                b"Content-Encoding", [name.encode("ascii")]
            )
        return name

    def _guarded_finish(self) -> None:
        """
        ``request.finish`` while a stream answers a request another framework
        serves: Klein, say, finishes the request when its route returns
        ``NOT_DONE_YET``, which would end the body under the stream's
        writes. Only the stream's own finish counts.
        """
        stream = self.stream
        if stream is not None and not stream._ended:
            return
        request = self.request
        del request.finish
        if not request.finished:
            request.finish()

    def commit(self, value: Any) -> None:
        """
        Send the whole response now, with ``value`` as its body (encoded
        as a handler's result), and end the request.

        :raises HttpError: ``500`` for a value with no HTTP form; nothing was
            sent.
        """
        content_type, payload = encode_body(value)
        request = self.request
        if self._started is None:
            self._started = self.app._request_began()
        self.move(Phase.DONE)
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
            if (
                len(payload) >= MIN_PLAIN
                and self.app.settings.compress
                and request.code not in _NOT_COMPRESSED
            ):
                payload = self._compressed(payload, content_type)
            request.responseHeaders.setRawHeaders(
                b"Content-Length", [b"%d" % len(payload)]
            )
            write_whole = getattr(request, "write_whole", None)
            if write_whole is not None:
                write_whole(payload)
            else:
                request.write(payload)
        request.finish()
        started, self._started = self._started, None
        self.app._request_ended(self, started, "complete")

    def _compressed(self, payload: bytes, content_type: bytes | None) -> bytes:
        """A plain body, compressed when it is worth it and accepted."""
        headers = self.request.responseHeaders
        if headers.hasHeader(b"content-encoding"):
            return payload
        declared = headers.getRawHeaders(b"content-type")
        name = self._negotiated(declared[0] if declared else content_type)
        return payload if name is None else compress_whole(name, payload)


# Statuses whose body is a part of another representation's, or none.
_NOT_COMPRESSED = frozenset({206, 304})


def _wants_events(request: Any) -> bool:
    """Whether the client asked for an event stream (``Accept``)."""
    accept = request.requestHeaders.getRawHeaders(b"accept")
    return bool(accept) and any(b"text/event-stream" in value for value in accept)

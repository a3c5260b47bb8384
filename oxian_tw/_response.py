# -*- test-case-name: tests.test_app -*-
"""
``ctx.response``: the response controller, a thin façade over the
request's `oxian_tw._exchange.Exchange` (its one owner). What it opens is
built beside what it opens: event streams in `oxian_tw._sse_response`,
files in `oxian_tw._send_file`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._eventstream import DEFAULT_POLICY, EventStream
from ._phase import Phase
from ._producer import as_bytes
from ._send_file import send_file
from ._sse_response import APP_PING, open_sse

if TYPE_CHECKING:
    from ._exchange import Exchange


class ResponseController:
    """
    ``ctx.response``: sets the status and headers of the pending response,
    commits it at once (`send`), or streams it (`stream`, `pipe`,
    `send_file`, `sse`). ``app.response(request)`` gives one for any
    ``twisted.web`` request.
    """

    _log = Logger()
    __slots__ = ("_exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def status(self, code: int) -> None:
        """Set the status of the pending response."""
        self._exchange.set_status(code)

    def headers(self, headers: Mapping[str, Any]) -> None:
        """Set (replace) headers of the pending response; names are case-insensitive."""
        self._exchange.set_headers(headers)

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
        exchange = self._exchange
        if exchange.settled:
            if exchange.phase is not Phase.GONE:
                self._log.warn(
                    "response.send() called after the response was committed; "
                    "ignored (request {request_id})",
                    request_id=exchange.request_id,
                )
            return
        if status is not None:
            exchange.set_status(status)
        if headers:
            exchange.set_headers(headers)
        exchange.commit(body)

    def stream(
        self,
        init: Any = None,
        /,
        *,
        status: int | None = None,
        headers: Mapping[str, Any] | None = None,
        keep_open: bool = False,
        compress: bool | None = None,
    ) -> Any:
        """
        Open the streamed response and return its `Stream`, or, given a
        chunk (``str`` or bytes-like), write it (opening with defaults first
        if needed) and return the write's Deferred.

        ``init`` may be ``{"status": ..., "headers": {...}, "keep_open":
        ...}``. Defaults: ``Content-Type: text/plain; charset=utf-8``,
        ``Cache-Control: no-cache, no-transform``, ``X-Accel-Buffering:
        no``. The body is chunked unless ``Content-Length`` was set.

        :param compress: compress the body with zstd, br or gzip when the
            client accepts one and the type is worth it, flushed with every
            turn's writes (SPEC §17); ``None``: as ``--compress`` says.
        :raises StreamClosed: when the client already left.
        :raises RuntimeError: when the response was already sent.
        """
        if init is not None and not isinstance(init, Mapping):
            chunk = as_bytes(init)
            return self._exchange.open_stream().write(chunk)
        if init:
            unknown = set(init) - {"status", "headers", "keep_open", "compress"}
            if unknown:
                raise TypeError(f"unknown stream options: {sorted(unknown)}")
            status = init.get("status", status)
            headers = {**init.get("headers", {}), **(headers or {})}
            keep_open = init.get("keep_open", keep_open)
            compress = init.get("compress", compress)
        return self._exchange.open_stream(status, headers, keep_open, compress)

    def sse(
        self,
        retry: int | None = None,
        keep_open: bool = True,
        headers: Mapping[str, Any] | None = None,
        status: int = 200,
        ping: Any = APP_PING,
        slow_consumer: Any = DEFAULT_POLICY,
        channels: Iterable[str] = (),
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
        run: str | None = None,
        compress: bool | None = None,
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
        :param run: attach to the run of this key (``ctx.runs``, SPEC
            §15): its events from the client's ``Last-Event-ID`` or from
            its first, until its ``end``; ``404`` for no such run, ``204``
            for a reconnect after its end.
        :param compress: compress the stream with zstd, br or gzip when the
            client accepts one, flushed with every turn's events (SPEC
            §17); ``None``: as ``--compress`` says.
        :raises HttpError: ``503`` with ``Retry-After`` at ``--max-streams``
            or during shutdown.
        :raises StreamClosed: when the client already left.
        :raises RuntimeError: when the response was already sent.
        """
        return open_sse(
            self._exchange,
            retry=retry,
            keep_open=keep_open,
            headers=headers,
            status=status,
            ping=ping,
            slow_consumer=slow_consumer,
            channels=channels,
            history=history,
            presence=presence,
            presence_events=presence_events,
            run=run,
            compress=compress,
        )

    def pipe(self, source: Any) -> Deferred[None]:
        """
        Stream ``source`` with backpressure: a file object (read block by
        block, closed at the end), an iterable or an async iterable of
        chunks. Opens the stream with defaults if needed.
        """
        return self._exchange.open_stream().pipe(source)

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
        return send_file(self._exchange, path, root, headers)

    def __repr__(self) -> str:
        exchange = self._exchange
        return (
            f"<ResponseController {exchange.phase.value} request {exchange.request_id}>"
        )

# -*- test-case-name: tests.test_site -*-
"""
The request of an `oxian_tw._site.OxianSite`: Twisted's ``Request``, with

- its body refused as soon as it passes ``--body-limit`` (from
  ``Content-Length`` before a byte of body, or while a chunked body
  arrives), and answered 408 when it makes no progress for
  ``--body-timeout`` (a deadline on the site's shared timer);
- its body never parsed by Twisted: ``Request`` would parse every form
  and ``multipart/form-data`` body into ``request.args`` with the email
  package (seconds of reactor time for 19,000 tiny parts) before the app's
  own bounded parser sees it (``parsePOSTFormSubmission=False``);
- the ``Date`` header formatted once a second, and the route tree served
  without ``render``'s round trip;
- its connection's phases moved on (`oxian_tw._connection`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes as unquote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, RESPONSES, HTTPChannel, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.server import Request
from twisted.web.server import version as server_version

from ._channel import OxianChannel
from ._context import header_value
from ._errors import TOO_LARGE_MESSAGE, error_entity, reason_phrase
from ._headers import FAST, FastHeaders, fast_headers
from ._requestid import NO_PROXIES, request_ids

if TYPE_CHECKING:
    from ._site import OxianSite

__all__ = ("WHOLE_WRITE", "HttpDate", "OxianRequest")

#: The one kind of deadline a request has.
BODY = "request body"


class HttpDate:
    """
    The ``Date`` header's value (RFC 9110 §6.6.1), formatted once per
    second of ``now()`` (whole seconds, as Twisted formats it).
    """

    __slots__ = ("_now", "_second", "_value")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(self._now())
        if second != self._second:
            self._value = datetimeToString(second)
            self._second = second
        return self._value


_http_date = HttpDate()


def _twisted_request_state() -> bool:
    """
    Whether Twisted's ``Request`` keeps, as `OxianRequest.write_whole`
    reads them, the three private facts its first ``write`` consults: the
    client left (``_disconnected``), a ``HEAD`` rendered as ``GET``
    (``_inFakeHead``), a body encoder (``_encoder``).
    """
    missing = object()
    defaults = {"_disconnected": False, "_inFakeHead": False, "_encoder": None}
    return all(
        getattr(Request, name, missing) is value for name, value in defaults.items()
    )


#: Whether `OxianRequest.write_whole` writes a whole response itself.
WHOLE_WRITE: bool = _twisted_request_state()


class OxianRequest(Request):
    """
    A request that stops reading a body once it exceeds the site's
    ``body_limit``, and answers 408 when its body makes no progress for the
    site's ``body_timeout``.
    """

    _log = Logger()
    #: The site answers a bad ``Host`` itself; the app need not check again.
    host_checked = True
    body_too_large = False
    _answered_early = False
    _body_received = 0

    # No attribute of our own on the instance unless needed: a streaming
    # request already holds 27 (Twisted's 25, and its producer), the most
    # CPython keeps in a dict that shares its keys with the class's other
    # instances; one more costs every open stream 1.3 KiB. The body's
    # deadline lives in the site's deadline queues, not here.

    def __init__(
        self,
        channel: Any,
        queued: object = None,
        parsePOSTFormSubmission: bool = False,  # noqa: N803 (Twisted's name)
    ) -> None:
        # The app parses bodies itself, bounded (``--form-fields``); the
        # deprecated ``queued`` is not passed on.
        super().__init__(  # type: ignore[no-untyped-call]
            channel, parsePOSTFormSubmission=parsePOSTFormSubmission
        )
        if FAST:
            # Twisted builds both as ``Headers``: the same objects become
            # `FastHeaders` (a subclass with no state of its own), cheaper
            # than building two more.
            # (Another kind, from another Twisted: two new ones, empty too.)
            if type(self.requestHeaders) is Headers:
                self.requestHeaders.__class__ = FastHeaders
            else:
                self.requestHeaders = fast_headers()
            if type(self.responseHeaders) is Headers:
                self.responseHeaders.__class__ = FastHeaders
            else:
                self.responseHeaders = fast_headers()

    def _oxian_site(self) -> OxianSite | None:
        site = getattr(self.channel, "site", None)
        return site if getattr(site, "is_oxian_site", False) else None

    def process(self) -> None:
        """
        What ``Request.process`` does, with the ``Date`` header formatted
        once a second rather than for every request (as uvicorn, aiohttp
        and nginx do), and the route tree serving the request without
        ``render``'s round trip: for a site whose root is the app's route
        tree. Any other root, and ``*``, take Twisted's own ``process``.
        """
        site = self.channel.site  # type: ignore[attr-defined]
        if not getattr(site, "routes_root", False) or self.path == b"*":
            Request.process(self)
            return
        self.site = site
        headers = self.responseHeaders
        headers.setRawHeaders(b"Server", [server_version])
        headers.setRawHeaders(b"Date", [_http_date()])
        self.prepath = []
        path = self.path
        segments = path[1:].split(b"/")
        # Unquoted only when a "%" is there (``37 in path``: a ``memchr``).
        # A copy either way: ``split`` leaves its list with room for twelve
        # items, 88 bytes more on every open stream's request.
        self.postpath = list(map(unquote, segments)) if 37 in path else segments[:]
        try:
            site._serve_routes(self)
        except BaseException:
            self.processingFailed(Failure())  # type: ignore[no-untyped-call]

    def gotLength(self, length: int | None) -> None:
        site = self._oxian_site()
        if site is None:
            super().gotLength(length)  # type: ignore[no-untyped-call]
            return
        connection = getattr(self.channel, "connection", None)
        if connection is not None:
            # The head is complete (inline: every request passes here).
            connection.head_complete()
        if length != 0:
            # A body follows (chunked, None, or of a known length).
            site.body_deadlines.start(self, BODY)
            self._guard_request_received()
            if length is not None and length > site.body_limit:
                self._refuse_body()
                length = 0
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        site = self._oxian_site()
        if site is not None and not self._answered_early:
            site.body_deadlines.restart(self, BODY)
        if self.body_too_large:
            return
        self._body_received += len(data)
        if site is not None and self._body_received > site.body_limit:
            self._refuse_body()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def _guard_request_received(self) -> None:
        """
        Route ``requestReceived`` through `_guarded_request_received`: only
        a request with a body (its deadline) or answered early needs a say
        there, so a request without either pays for no override.
        """
        self.requestReceived = self._guarded_request_received  # type: ignore[method-assign]

    def _guarded_request_received(
        self, command: bytes, path: bytes, version: bytes
    ) -> None:
        # Drop the instance attribute (and the cycle through it).
        self.__dict__.pop("requestReceived", None)
        self._stop_body_deadline()
        if self._answered_early:
            # The answer is out and the connection is closing; the rest of a
            # body already in the read buffer completed the request.
            return
        Request.requestReceived(self, command, path, version)

    def write(self, data: bytes) -> None:
        channel = self.channel
        if self.startedWriting or not data or not isinstance(channel, OxianChannel):
            super().write(data)  # type: ignore[no-untyped-call]
            return
        # The head and the first bytes of the body leave in one send.
        channel.holding_head = True
        try:
            super().write(data)  # type: ignore[no-untyped-call]
        finally:
            channel.holding_head = False
            channel.release_head()

    def write_whole(self, body: bytes) -> None:
        """
        Write ``body`` as the whole response, its ``Content-Length`` set: what
        the first ``write`` does (the default ``Content-Type``, the head),
        in one piece to the channel, for the plain case (an `OxianChannel`,
        a body to send, no cookies, ``ETag`` or ``Last-Modified`` by
        attribute, no encoder); any other, through ``write``.
        """
        channel = self.channel
        if (
            not WHOLE_WRITE
            or self.startedWriting
            or not isinstance(channel, OxianChannel)
            or self.method == b"HEAD"
            or self.code in NO_BODY_CODES
            or self._disconnected
            or self._inFakeHead
            or self._encoder is not None
            or self.cookies
            or self.lastModified is not None
            or self.etag is not None
            or self.finished
        ):
            self.write(body)
            return
        headers = self.responseHeaders
        content_type = self.defaultContentType
        if body and content_type is not None and not headers.hasHeader(b"content-type"):
            headers.setRawHeaders(b"Content-Type", [content_type])
        self.startedWriting = 1
        self.sentLength = len(body)
        channel.write_response(
            self.clientproto, b"%d" % self.code, self.code_message, headers, body
        )

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if message is None and code not in RESPONSES:
            # Twisted's table lacks 422, 429, 431...: "Unknown Status".
            message = reason_phrase(code).encode("ascii")
        super().setResponseCode(code, message)

    def finish(self) -> None:
        channel = self.channel
        connection = getattr(channel, "connection", None)
        if connection is not None:
            # The response is out (before Twisted goes on to a pipelined
            # request): the next bytes begin the next request head.
            connection.response_done()
        super().finish()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure) -> None:
        self.__dict__.pop("requestReceived", None)
        self._stop_body_deadline()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _stop_body_deadline(self) -> None:
        site = self._oxian_site()
        if site is not None:
            site.body_deadlines.cancel(self, BODY)

    def deadline_passed(self, kind: str) -> None:
        """The body made no progress for ``--body-timeout``."""
        site = self._oxian_site()
        timeout = site.body_timeout if site is not None else None
        self._answer_early(
            408,
            "Request body not received in time",
            "408: no request body progress in {timeout} s; connection closed "
            "(request {request_id})",
            timeout=timeout,
        )

    def _refuse_body(self) -> None:
        self.body_too_large = True
        if not isinstance(self.channel, HTTPChannel):
            # HTTP/2 streams finish the request; the app answers 413 then.
            return
        self._stop_body_deadline()
        # Twisted answers "Expect: 100-continue" after gotLength; the body
        # is refused, so the client must not be invited to send it.
        self.requestHeaders.removeHeader(b"expect")
        site = self._oxian_site()
        self._answer_early(
            413,
            TOO_LARGE_MESSAGE,
            "413: request body over {limit} bytes refused (request {request_id})",
            limit=site.body_limit if site is not None else None,
        )

    def _answer_early(
        self, status: int, message: str, log_format: str, **log_fields: Any
    ) -> None:
        """
        Answer ``status`` with the JSON error before the request is complete
        (Twisted has not given it its method and path yet), and close.
        """
        self._answered_early = True
        self._guard_request_received()
        site = self._oxian_site()
        request_id, client_id = request_ids(
            self, site.trusted_proxies if site is not None else NO_PROXIES
        )
        self._log.info(log_format, request_id=request_id, **log_fields)
        entity, body = error_entity(status, message)
        headers = {name: [value] for name, value in entity.items()}
        headers["X-Request-Id"] = [request_id]
        cors = getattr(site, "cors", None)
        if cors is not None:
            for name, value in cors.response_headers(header_value(self, b"origin")):
                headers.setdefault(name, []).append(value)
        channel = self.channel
        if isinstance(channel, HTTPChannel):
            headers["Connection"] = ["close"]
            channel.writeHeaders(
                b"HTTP/1.1",
                str(status).encode("ascii"),
                reason_phrase(status).encode("ascii"),
                Headers(headers),
            )
            channel.write(body)
            connection = getattr(channel, "connection", None)
            if connection is not None:
                connection.closing(stop_reading=False)
            channel.loseConnection()
        else:
            # An HTTP/2 stream: the response, then the stream ends; the
            # connection and its other streams go on.
            self.setResponseCode(status)
            for name, values in headers.items():
                self.responseHeaders.setRawHeaders(name, values)
            self.write(body)
            self.finish()
        access_log = getattr(site, "access_log", None)
        if site is not None and access_log is not None:
            # The request line is not the request's yet (Twisted sets it once
            # the body has arrived): the line says "-" for it.
            self.sentLength = len(body)
            now = site.reactor.seconds()
            access_log.record(
                self,
                request_id=request_id,
                client_request_id=client_id,
                status=status,
                started=now,
                now=now,
                ended="complete",
                request_line=False,
            )

# -*- test-case-name: tests.test_site -*-
"""
The ``Site`` and ``Request`` that ``app.service()`` and ``twistd oxian``
serve with: request bodies over the limit are refused as soon as the limit
is crossed (from ``Content-Length`` before a byte of body, or while a
chunked body arrives), and the access log carries the request id.

An app mounted with ``app.resource()`` in another ``Site`` still answers 413
for large bodies, but only once that ``Site`` has read them.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.http import HTTPChannel, combinedLogFormatter
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ._context import header_value, request_id_of
from ._cors import CorsPolicy
from ._errors import error_body
from ._response import dump_json

TOO_LARGE_MESSAGE = "Request body too large"


class OxianRequest(Request):
    """
    A request that stops reading a body once it exceeds the site's
    ``body_limit``.
    """

    _log = Logger()
    body_too_large = False
    _answered_early = False
    _body_received = 0

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "body_limit", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if length is not None and limit is not None and length > limit:
            self._refuse_body()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        limit = self._limit()
        if limit is not None and self._body_received > limit:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._answered_early:
            # The 413 is out and the connection is closing; the rest of a
            # body already in the read buffer completed the request.
            return
        super().requestReceived(command, path, version)

    def _refuse_body(self) -> None:
        self.body_too_large = True
        if not isinstance(self.channel, HTTPChannel):
            # HTTP/2 streams finish the request; the app answers 413 then.
            return
        self._answered_early = True
        request_id = request_id_of(self)
        body = dump_json(error_body(413, TOO_LARGE_MESSAGE))
        headers = Headers(
            {
                "Content-Type": ["application/json; charset=utf-8"],
                "Content-Length": [str(len(body))],
                "Connection": ["close"],
                "X-Request-Id": [request_id],
            }
        )
        cors = getattr(getattr(self.channel, "site", None), "cors", None)
        if cors is not None:
            for name, value in cors.response_headers(header_value(self, b"origin")):
                headers.addRawHeader(name, value)
        self._log.info(
            "413: request body over {limit} bytes refused (request {request_id})",
            limit=self._limit(),
            request_id=request_id,
        )
        self.channel.writeHeaders(b"HTTP/1.1", b"413", b"Content Too Large", headers)
        self.channel.write(body)
        self.channel.loseConnection()


def access_log_formatter(timestamp: str, request: Any) -> str:
    """Twisted's combined log line, plus the request id."""
    line = combinedLogFormatter(timestamp, request)
    return f"{line} request_id={getattr(request, 'oxian_request_id', '-')}"


class OxianSite(Site):
    """
    A ``Site`` for one app.

    :param resource: the root resource.
    :param body_limit: the largest request body accepted, in bytes.
    :param cors: the app's CORS policy, for the responses the site writes
        itself (an early ``413``).
    """

    requestFactory = OxianRequest
    _log = Logger()

    def __init__(
        self,
        resource: IResource,
        *,
        body_limit: int,
        cors: CorsPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("logFormatter", access_log_formatter)
        super().__init__(resource, **kwargs)
        self.body_limit = body_limit
        self.cors = cors

    def log(self, request: Request) -> None:
        """
        One access log line per request, with its request id: to the log
        file when the site has a ``logPath``, else through the logging
        system (where ``twistd`` shows it).
        """
        if self.logPath is not None:
            super().log(request)
            return
        self._log.info("{line}", line=self._logFormatter(self._logDateTime, request))

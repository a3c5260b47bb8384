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
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.iweb import IRequest

from ._errors import error_response

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
    ``ctx.response``: sets the status and headers of the pending response
    and commits it.

    :param request: the ``twisted.web`` request.
    :param debug: put tracebacks of unexpected errors in error bodies.
    :param request_id: the request's id, for log lines.
    """

    _log = Logger()

    def __init__(self, request: IRequest, *, debug: bool, request_id: str) -> None:
        self._request = request
        self._debug = debug
        self._request_id = request_id
        self._status = 200
        self._headers: dict[str, tuple[str, str]] = {}
        self.committed = False
        self.disconnected = False

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

    # The hand-offs below are called by the app, never by handlers.

    def finish_with(self, result: Any) -> None:
        """Commit the handler's result unless the response is already out."""
        if self.committed or self.disconnected:
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
        if status >= 500:
            self._log.failure(
                "Unhandled error in handler (request {request_id})",
                failure,
                request_id=self._request_id,
            )
        if self.committed or self.disconnected:
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

    def _commit_value(self, value: Any) -> None:
        content_type, payload = encode_body(value)
        if content_type is not None and "content-type" not in self._headers:
            self.headers({"Content-Type": content_type})
        self._commit(payload)

    def _commit(self, payload: bytes) -> None:
        self.committed = True
        if self.disconnected:
            return
        request = self._request
        request.setResponseCode(self._status)
        for name, value in self._headers.values():
            request.setHeader(name, value)
        if self._status in NO_BODY_CODES:
            request.responseHeaders.removeHeader(b"content-type")
        else:
            request.setHeader(b"content-length", b"%d" % len(payload))
            request.write(payload)
        request.finish()

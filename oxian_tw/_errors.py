# -*- test-case-name: tests.test_errors -*-
"""
Errors users raise and errors the framework reports, and how an exception
becomes the JSON error body of SPEC §3.
"""

from __future__ import annotations

import traceback
from http import HTTPStatus
from typing import Any

from ._json import JSON_CONTENT_TYPE, dump_json


class HttpError(Exception):
    """
    Raise from a handler (or middleware) to answer with an HTTP error.

    :param status: the HTTP status code, 300 to 599.
    :param message: the human-readable message; defaults to the status's
        reason phrase.
    :param code: an optional machine-readable error code.
    :param details: optional JSON-serialisable details.
    :param headers: optional response headers (``Retry-After``, ...).
    """

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if message is None:
            message = reason_phrase(status)
        super().__init__(message)
        self.status_code = status
        self.message = message
        self.code = code
        self.details = details
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        """The HTTP status code (an alias of ``status_code``)."""
        return self.status_code


class HubUnavailable(HttpError):
    """
    The hub cannot reach its Redis: a publish failed before anything was
    sent, so nothing was published and a retry cannot duplicate it.
    Unhandled, it answers ``503`` with ``Retry-After``.
    """

    def __init__(
        self, message: str = "The event hub is unavailable; nothing was published"
    ) -> None:
        super().__init__(
            503, message, code="hub_unavailable", headers={"Retry-After": "5"}
        )


class HubTimeout(HttpError):
    """
    A publish was sent to Redis, which did not confirm it in time (or the
    connection was lost before it did): the event may have been published,
    and may still be delivered. Retrying can publish it twice. Unhandled,
    it answers ``504``.
    """

    def __init__(
        self,
        message: str = (
            "The event hub did not confirm the publish in time; "
            "it may have been published"
        ),
    ) -> None:
        super().__init__(504, message, code="hub_timeout")


class StreamClosed(Exception):
    """
    A write was pending on a stream whose client went away or that was
    closed.
    """


class RouteTreeError(Exception):
    """
    The route tree cannot be served: two files map to one pattern, a file
    name is malformed, or a route file fails to import. Raised at startup,
    never at request time.
    """


def reason_phrase(status: int) -> str:
    """The reason phrase of ``status`` (``"Error"`` for an unknown one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def http_status_of(exc: BaseException) -> int | None:
    """
    The status an exception asks for: ``HttpError`` and any exception with an
    integer ``status_code`` between 300 and 599; ``None`` for the rest.
    """
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        if 300 <= status <= 599:
            return status
    return None


def error_response(
    exc: BaseException, *, debug: bool = False
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """
    Shape an exception into ``(status, headers, body)`` per SPEC §3.

    A status-carrying exception keeps its message, ``code``, ``details`` and
    ``headers``; anything else is a 500 whose message says nothing about the
    cause unless ``debug`` is set, which adds the traceback.
    """
    status = http_status_of(exc)
    if status is None:
        error: dict[str, Any] = {"message": "Internal Server Error"}
        if debug:
            error["traceback"] = "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )
        return 500, {}, {"error": error}
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc) or reason_phrase(status)
    error = {"message": message}
    for key in ("code", "details"):
        value = getattr(exc, key, None)
        if value is not None:
            error[key] = value
    headers = getattr(exc, "headers", None)
    headers = {str(k): str(v) for k, v in dict(headers or {}).items()}
    return status, headers, {"error": error}


#: The message of a ``413`` for a body over ``--body-limit``.
TOO_LARGE_MESSAGE = "Request body too large"


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The error body for a framework-generated status (404, 405, 413...)."""
    return {"error": {"message": message or reason_phrase(status)}}


def error_entity(
    status: int, message: str | None = None
) -> tuple[dict[str, str], bytes]:
    """
    The headers (type and length) and bytes of a framework error's body:
    what every writer that has no response object sends (the early answers
    of a connection), the same as a handler's error goes out.
    """
    body = dump_json(error_body(status, message))
    return {"Content-Type": JSON_CONTENT_TYPE, "Content-Length": str(len(body))}, body


def closing_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> bytes:
    """
    A whole HTTP/1.1 response with the JSON error body and ``Connection:
    close``, for what a connection answers before (or without) a request
    object: a head that is too slow or too large, a connection past the cap.
    """
    entity, body = error_entity(status, message)
    lines = [
        f"HTTP/1.1 {status} {reason_phrase(status)}",
        *(f"{name}: {value}" for name, value in entity.items()),
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

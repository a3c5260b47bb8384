# -*- test-case-name: tests.test_context -*-
"""
What a handler receives besides ``data``: ``ctx`` and ``ctx.request``
(SPEC §3).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IRequest

if TYPE_CHECKING:
    from ._app import OxianApp
    from ._hub import Hub
    from ._response import ResponseController

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")


def request_id_of(request: IRequest) -> str:
    """
    The request's id: a sane ``X-Request-Id`` from the client (up to 128 of
    ``A-Z a-z 0-9 . _ : + = / -``), else a fresh one; computed once.
    """
    rid = getattr(request, "oxian_request_id", None)
    if rid is None:
        sent = request.getHeader("x-request-id")
        if sent is not None and _SANE_REQUEST_ID.fullmatch(sent):
            rid = sent
        else:
            rid = uuid.uuid4().hex
        request.oxian_request_id = rid
    return rid


def header_value(request: IRequest, name: bytes) -> str | None:
    """The request header ``name`` as text (Latin-1), or ``None``."""
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


class Headers(Mapping[str, str]):
    """
    Request headers, read-only and case-insensitive. ``get(name)`` gives the
    values of a repeated header joined with ``", "``; ``get_all`` gives the
    list.
    """

    def __init__(self, headers: TwistedHeaders) -> None:
        self._headers = headers

    def get_all(self, name: str) -> list[str]:
        """Every value of the header ``name`` (empty when absent)."""
        return self._headers.getRawHeaders(name, [])

    def __getitem__(self, name: str) -> str:
        values = self._headers.getRawHeaders(name)
        if values is None:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._headers.hasHeader(name)

    def __iter__(self) -> Iterator[str]:
        for name, _ in self._headers.getAllRawHeaders():
            yield name.decode("latin-1").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self._headers.getAllRawHeaders())

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


class RequestInfo:
    """
    ``ctx.request``.

    :ivar method: the HTTP method, e.g. ``"GET"``.
    :ivar url: the absolute URL as the client asked for it.
    :ivar path: the path as sent (still percent-encoded, no query).
    :ivar headers: `Headers`.
    :ivar query: the parsed query (a repeated key gives a list).
    :ivar path_params: the matched route's params.
    :ivar body: the parsed body (SPEC §3 table).
    :ivar raw_body: the body's bytes.
    :ivar client: the peer's host, or ``None``.
    :ivar raw: the ``twisted.web`` request.
    """

    def __init__(
        self,
        raw: IRequest,
        *,
        query: dict[str, Any],
        path_params: dict[str, Any],
        body: Any,
        raw_body: bytes,
    ) -> None:
        self.raw = raw
        self.method = raw.method.decode("ascii", "replace")
        self.path = raw.path.decode("latin-1")
        self.url = _absolute_url(raw)
        self.headers = Headers(raw.requestHeaders)
        self.query = query
        self.path_params = path_params
        self.body = body
        self.raw_body = raw_body
        address = raw.getClientAddress()
        self.client: str | None = getattr(address, "host", None)


def _absolute_url(request: IRequest) -> str:
    scheme = "https" if request.isSecure() else "http"
    host = request.getHeader("host")
    if host is None:
        address = request.getHost()
        host = f"{getattr(address, 'host', 'localhost')}:{getattr(address, 'port', 0)}"
    return f"{scheme}://{host}{request.uri.decode('latin-1')}"


class Dependencies(Mapping[str, Any]):
    """``ctx.dependencies``: a read-only mapping, also readable by attribute."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = MappingProxyType(dict(values or {}))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no dependency named {name!r}") from None

    def __repr__(self) -> str:
        return f"Dependencies({dict(self._values)!r})"


#: What middleware may not set through ``{"context": ...}``: ``ctx``'s own.
RESERVED_CONTEXT_NAMES = frozenset(
    {
        "request",
        "response",
        "dependencies",
        "request_id",
        "route",
        "clock",
        "app",
        "hub",
        "sleep",
    }
)


class Context:
    """
    ``ctx``: everything about the request besides ``data``. Middleware may
    add attributes (``ctx.user``).
    """

    def __init__(
        self,
        *,
        request: RequestInfo,
        response: ResponseController,
        dependencies: Dependencies,
        request_id: str,
        route: str,
        clock: IReactorTime,
        app: OxianApp,
        hub: Hub,
    ) -> None:
        self.request = request
        self.response = response
        self.dependencies = dependencies
        self.request_id = request_id
        self.route = route
        self.clock = clock
        self.app = app
        #: The app's hub (``ctx.hub.publish(channel, data)``).
        self.hub = hub

    def sleep(self, seconds: float) -> Deferred[None]:
        """A Deferred that fires with ``None`` after ``seconds`` on ``ctx.clock``."""
        return deferLater(self.clock, seconds, lambda: None)

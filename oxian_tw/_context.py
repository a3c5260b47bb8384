# -*- test-case-name: tests.test_app -*-
"""
What a handler receives besides ``data``: ``ctx`` and ``ctx.request``
(SPEC §3). Request ids are `oxian_tw._requestid`'s.

Both cost next to nothing until used: ``ctx`` is one small object, and
``ctx.request``'s URL, headers, method and client are read from the
``twisted.web`` request when first asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IRequest

from ._policy import CheckedHub, CheckedRuns

if TYPE_CHECKING:
    from ._app import OxianApp
    from ._exchange import Exchange
    from ._response import ResponseController
    from ._runs import Runs
    from .hub import IHub


def header_value(request: IRequest, name: bytes) -> str | None:
    """The request header ``name`` as text (Latin-1), or ``None``."""
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


def header_text(request: IRequest, name: bytes) -> str | None:
    """
    The request header ``name`` as the text a browser meant: UTF-8 (what
    EventSource sends a non-ASCII ``Last-Event-ID`` as), else Latin-1;
    ``None`` when absent.
    """
    value: bytes | None = request.getHeader(name)
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class Headers(Mapping[str, str]):
    """
    Request headers, read-only and case-insensitive. ``get(name)`` gives the
    values of a repeated header joined with ``", "``; ``get_all`` gives the
    list. Values are decoded as Latin-1 (RFC 9110 §5.5: bytes beyond ASCII
    are opaque), so no header can fail to decode.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: TwistedHeaders) -> None:
        self._headers = headers

    def get_all(self, name: str) -> list[str]:
        """Every value of the header ``name`` (empty when absent)."""
        values = self._headers.getRawHeaders(name.encode("latin-1"), [])
        return [v.decode("latin-1") for v in values]

    def __getitem__(self, name: str) -> str:
        values = self._headers.getRawHeaders(name.encode("latin-1"))
        if values is None:
            raise KeyError(name)
        return ", ".join(v.decode("latin-1") for v in values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._headers.hasHeader(name.encode("latin-1"))

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

    :ivar query: the parsed query (a repeated key gives a list).
    :ivar path_params: the matched route's params.
    :ivar body: the parsed body (SPEC §3 table).
    :ivar raw_body: the body's bytes.
    :ivar raw: the ``twisted.web`` request.
    """

    __slots__ = ("raw", "query", "path_params", "body", "raw_body", "_headers")

    def __init__(
        self,
        raw: IRequest,
        query: dict[str, Any],
        path_params: dict[str, Any],
        body: Any,
        raw_body: bytes,
    ) -> None:
        self.raw = raw
        self.query = query
        self.path_params = path_params
        self.body = body
        self.raw_body = raw_body
        self._headers: Headers | None = None

    @property
    def method(self) -> str:
        """The HTTP method, e.g. ``"GET"``."""
        method: bytes = self.raw.method
        return method.decode("ascii", "replace")

    @property
    def path(self) -> str:
        """The path as sent (still percent-encoded, no query)."""
        path: bytes = self.raw.path
        return path.decode("latin-1")

    @property
    def url(self) -> str:
        """The absolute URL as the client asked for it."""
        raw = self.raw
        scheme = "https" if raw.isSecure() else "http"
        host = raw.getHeader(b"host")
        if host is None:
            address = raw.getHost()
            where = f"{getattr(address, 'host', 'localhost')}:"
            where += str(getattr(address, "port", 0))
        else:
            where = host.decode("latin-1")
        return f"{scheme}://{where}{raw.uri.decode('latin-1')}"

    @property
    def headers(self) -> Headers:
        """The request headers (`Headers`)."""
        if self._headers is None:
            self._headers = Headers(self.raw.requestHeaders)
        return self._headers

    @property
    def client(self) -> str | None:
        """The peer's host, or ``None``."""
        return getattr(self.raw.getClientAddress(), "host", None)


class Dependencies(Mapping[str, Any]):
    """
    ``ctx.dependencies``: a read-only mapping, also readable by attribute
    (SPEC §3); setting or deleting either way raises ``TypeError``.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_values", MappingProxyType(dict(values or {})))

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"dependencies are read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"dependencies are read-only: cannot delete {name!r}")

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
        "runs",
        "sleep",
    }
)


class Context:
    """
    ``ctx``: everything about the request besides ``data``. Middleware may
    add attributes (``ctx.user``).

    :ivar request: ``ctx.request`` (`RequestInfo`).
    :ivar response: the response controller (``ctx.response``).
    :ivar dependencies: the route's dependencies, read-only.
    :ivar route: the matched pattern, e.g. ``/stocks/:symbol/stream``.
    :ivar app: the `OxianApp`.
    """

    __slots__ = (
        "request",
        "dependencies",
        "route",
        "app",
        "_exchange",
        "__dict__",
    )

    def __init__(
        self,
        request: RequestInfo,
        exchange: Exchange,
        dependencies: Dependencies,
        route: str,
        app: OxianApp,
    ) -> None:
        self.request = request
        self._exchange = exchange
        self.dependencies = dependencies
        self.route = route
        self.app = app

    @property
    def response(self) -> ResponseController:
        """``ctx.response``: the response controller."""
        return self._exchange.response

    @property
    def request_id(self) -> str:
        """The request's id, also sent as ``X-Request-Id``."""
        return self._exchange.request_id

    @property
    def clock(self) -> IReactorTime:
        """The ``IReactorTime`` the app runs on."""
        return self.app.clock

    @property
    def hub(self) -> IHub:
        """
        The app's hub as this request sees it (``ctx.hub.publish(channel,
        data)``): under a channel policy (``channels.py``), each publish
        and presence call is asked first.
        """
        policy = self._exchange.policy
        app = self.app
        publishes = app.rate_limits.publishes
        if policy is None and publishes is None:
            return app.hub
        return CheckedHub(
            app.hub, policy, self, None if publishes is None else publishes.take
        )

    @property
    def runs(self) -> Runs:
        """
        The app's runs (``ctx.runs.start(key, source)``, SPEC §15); under a
        channel policy, starting and stopping are asked first.
        """
        policy = self._exchange.policy
        if policy is None:
            return self.app.runs
        return CheckedRuns(self.app.runs, policy)  # type: ignore[return-value]

    def sleep(self, seconds: float) -> Deferred[None]:
        """A Deferred that fires with ``None`` after ``seconds`` on ``ctx.clock``."""
        return deferLater(self.app.clock, seconds, lambda: None)

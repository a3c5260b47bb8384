# -*- test-case-name: tests.test_app -*-
"""
Serving the file routes: the leaf ``IResource`` an app mounts
(`RouteResource`) and what it runs for each request (`Dispatcher`).

For one request: CORS headers, the ``Host`` (400, `oxian_tw._host`; an
`oxian_tw._site.OxianSite` checks it before any resource runs), the path
below the base path (decoded per segment), the route (404), the method
(405, or the automatic ``OPTIONS``), the body (413, 400), ``data`` and
``ctx``, then the route's pipeline and handler. What the handler gives
goes to the request's `oxian_tw._exchange.Exchange`, which owns the rest
of the request's life.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ._body import build_data, parse_body, parse_query
from ._context import Context, RequestInfo, header_value
from ._cors import CorsPolicy
from ._errors import TOO_LARGE_MESSAGE, HttpError
from ._exchange import Exchange
from ._host import host_problem
from ._invoke import Handlers
from ._modules import RouteModules
from ._pipeline import Chain, Pipeline
from ._policy import RequestPolicy
from ._ratelimit import too_many
from ._routing import RouteTable, discover

if TYPE_CHECKING:
    from ._app import OxianApp


@attrs.frozen
class _Plan:
    """What serving one route takes, resolved at startup."""

    pattern: str
    handlers: Handlers
    chain: Chain
    # `Handlers.for_method`, unrolled: this is looked up for every request.
    by_wire: Mapping[bytes, Callable[..., Any]] = attrs.field(init=False)
    default: Callable[..., Any] | None = attrs.field(init=False)

    @by_wire.default
    def _by_wire(self) -> Mapping[bytes, Callable[..., Any]]:
        return self.handlers.by_wire

    @default.default
    def _default(self) -> Callable[..., Any] | None:
        return self.handlers.default


class Dispatcher:
    """
    The route tree of an app, and serving one request of it.

    :param app: the app.
    :param root: the route directory.
    :raises RouteTreeError: when the tree cannot be served.
    """

    def __init__(self, app: OxianApp, root: str) -> None:
        self._app = app
        modules = self.modules = RouteModules(root)
        self.routes = RouteTable(discover(root))
        self.pipeline = Pipeline(root, modules, app.dependencies)
        self._plans = {
            route: _Plan(
                route.pattern,
                Handlers.from_module(modules.load(route.file), route.file),
                self.pipeline.chain(route),
            )
            for route in self.routes.routes
        }
        settings = app.settings
        self.cors = CorsPolicy.from_settings(settings)
        self._base = [p for p in settings.base_path.split("/") if p]
        self._body_limit = settings.body_limit
        self._form_fields = settings.form_fields
        # Static routes by the request's raw path segments (as twisted.web
        # splits and unquotes them), base path included: one lookup.
        base = tuple(p.encode("utf-8") for p in self._base)
        self._static = {
            base + tuple(s.value.encode("utf-8") for s in route.segments): plan
            for route, plan in self._plans.items()
            if route.is_static
        }

    def cors_headers(self, request: Any) -> list[tuple[str, str]]:
        """The CORS headers every response to ``request`` gets."""
        if self.cors is None:
            return []
        return self.cors.response_headers(header_value(request, b"origin"))

    def run(self, owner: Exchange) -> Any:
        """
        Serve ``owner``'s request: the handler's result, or a Deferred of it.

        :raises HttpError: for the framework's own answers (400, 404, 405,
            413), and whatever the handler raises.
        """
        request = owner.request
        cors = self.cors
        if cors is not None:
            owner.set_headers(dict(self.cors_headers(request)))
        if not getattr(request, "host_checked", False):
            problem = host_problem(
                request.requestHeaders.getRawHeaders(b"host"), request.clientproto
            )
            if problem is not None:
                raise HttpError(400, problem)
        plan = self._static.get(tuple(request.postpath))
        if plan is None:
            plan, params = self._match(request)
        else:
            params = {}
        requests = self._app.rate_limits.requests
        if requests is not None and not plan.chain.steps:
            # (With middleware, counted after it: per subject when it set
            # ctx.user, in the pipeline.)
            client = self._app.trusted_proxies.client_of(request)
            wait = requests.take(f"addr:{client}")
            if wait:
                raise too_many("requests", wait)
        owner.route = plan.pattern
        method = request.method
        handler = plan.by_wire.get(method, plan.default)
        if handler is None or method == b"OPTIONS":
            handler = self._options_or_405(owner, plan.handlers, handler)
            if handler is None:
                return None
        if getattr(request, "body_too_large", False):
            raise HttpError(413, TOO_LARGE_MESSAGE)
        content = request.content
        raw_body = content.read() if content is not None else b""
        if len(raw_body) > self._body_limit:
            raise HttpError(413, TOO_LARGE_MESSAGE)
        uri = request.uri
        mark = uri.find(b"?")
        query = parse_query(uri[mark + 1 :]) if mark >= 0 else {}
        body = (
            parse_body(request.getHeader("content-type"), raw_body, self._form_fields)
            if raw_body
            else None
        )
        app = self._app
        ctx = Context(
            RequestInfo(request, query, params, body, raw_body),
            owner,
            app.dependencies,
            plan.pattern,
            app,
        )
        chain = plan.chain
        if chain.authorizers or chain.steps:
            # (Middleware may set ctx.user from a stream token: its patterns
            # bound the channels too.)
            owner.policy = RequestPolicy(
                chain.authorizers, ctx, app.channel_decisions, app.clock.seconds
            )
        data = build_data(body, query, params)
        return self.pipeline.run(plan.chain, handler, data, ctx, owner)

    def _options_or_405(
        self,
        owner: Exchange,
        handlers: Handlers,
        handler: Callable[..., Any] | None,
    ) -> Callable[..., Any] | None:
        """
        For ``OPTIONS`` (CORS preflight headers) or a method without a
        handler: the handler to run, or ``None`` when ``OPTIONS`` was
        answered here (``204`` with ``Allow``).

        :raises HttpError: ``405`` with ``Allow``.
        """
        request = owner.request
        options = request.method == b"OPTIONS"
        cors = self.cors
        if options and cors is not None:
            if request.getHeader(b"access-control-request-method") is not None:
                owner.set_headers(
                    dict(
                        cors.preflight_headers(
                            header_value(request, b"origin"),
                            header_value(request, b"access-control-request-headers"),
                            handlers.allow(),
                        )
                    )
                )
        if handler is not None:
            return handler
        allow = handlers.allow()
        if options:
            owner.set_headers({"Allow": allow})
            owner.set_status(204)
            owner.commit(None)
            return None
        raise HttpError(405, "Method Not Allowed", headers={"Allow": allow})

    def _match(self, request: Any) -> tuple[_Plan, dict[str, Any]]:
        """A route that is not static: by the route table."""
        try:
            segments = [p.decode("utf-8") for p in request.postpath if p]
        except UnicodeDecodeError:
            raise HttpError(400, "The URL path is not valid UTF-8") from None
        base = self._base
        if base:
            if segments[: len(base)] != base:
                raise HttpError(404, "Not Found")
            segments = segments[len(base) :]
        match = self.routes.match(segments)
        if match is None:
            raise HttpError(404, "Not Found")
        return self._plans[match.route], match.params

    def refusal(self, error: HttpError) -> RouteResource:
        """
        A leaf resource answering any request with ``error`` (CORS headers,
        request id and access log line included), for what the site
        refuses before a resource is looked up.
        """

        def refuse(owner: Exchange) -> None:
            if self.cors is not None:
                owner.set_headers(dict(self.cors_headers(owner.request)))
            raise error

        return RouteResource(self._app, refuse)


class RouteResource(Resource):
    """
    The app as a leaf ``IResource``: every request below it is served by
    the route tree (the mount prefix is stripped).
    """

    isLeaf = True

    def __init__(self, app: OxianApp, run: Callable[[Exchange], Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._app = app
        self._run = run

    def render(self, request: Any) -> Any:
        self._serve(request)
        return NOT_DONE_YET

    def _serve(self, request: Any) -> None:
        """Serve ``request``: its owner runs the route tree."""
        Exchange(self._app, request).serve(self._run)

# -*- test-case-name: tests.test_app -*-
"""
``OxianApp``: a route tree served through Klein.

Layering, outermost first: `_AppResource` (a leaf ``IResource``) assigns the
request id and turns undecodable paths into a JSON 400; Klein's resource
adapts the one branch endpoint, `OxianApp._dispatch`, cancelling its
Deferred when the client disconnects; ``_dispatch`` matches our route table,
builds ``data`` and ``ctx``, runs the handler through the route's pipeline
(dependencies, middleware, interceptors) and hands the result to the
response controller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from klein import Klein
from klein.interfaces import IKleinRequest
from twisted.application.service import IService, MultiService
from twisted.application.strports import service as strports_service
from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from ._body import build_data, parse_body, parse_query
from ._config import Settings, read_config_file, settings_from
from ._context import (
    Context,
    Dependencies,
    RequestInfo,
    header_value,
    request_id_of,
)
from ._cors import CorsPolicy
from ._errors import HttpError, error_body
from ._hub import Hub
from ._invoke import Handlers
from ._modules import RouteModules
from ._pipeline import Pipeline
from ._redis import parse_redis_url
from ._redishub import RedisHub
from ._registry import StreamRegistry
from ._response import ResponseController, dump_json
from ._routing import Route, RouteTable, discover
from ._site import TOO_LARGE_MESSAGE, OxianSite


class OxianApp:
    """
    A route tree served with Twisted.

    :param routes: the route directory (a path or ``FilePath``).
    :param dependencies: app-level dependencies, the root's parent (§7).
    :param reactor: the reactor (``IReactorTime`` at least) the app runs on;
        the global reactor, resolved late, when ``None``. Tests pass a
        ``Clock``.
    :param config: settings by their ``twistd oxian`` long names (§8), or
        the path of a TOML file of them (like ``oxian.toml``).

    :raises RouteTreeError: when the tree cannot be served (conflicting
        files, malformed names, a route or pipeline file that fails to
        import or lacks its function).
    :raises ConfigError: for unknown settings or bad values.
    """

    _log = Logger()

    def __init__(
        self,
        routes: str | os.PathLike[str] | FilePath[str],
        *,
        dependencies: Mapping[str, Any] | None = None,
        reactor: IReactorTime | None = None,
        config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    ) -> None:
        root = routes.path if isinstance(routes, FilePath) else os.fspath(routes)
        if isinstance(config, str | os.PathLike):
            config = read_config_file(config)
        self.settings: Settings = settings_from({**(config or {}), "routes": root})
        self._reactor = reactor
        self._modules = RouteModules(root)
        self.routes = RouteTable(discover(root))
        self._handlers = {
            route: Handlers.from_module(self._modules.load(route.file))
            for route in self.routes.routes
        }
        #: The app-level dependencies, the parent of the root folder's.
        self.dependencies = Dependencies(dependencies)
        self._pipeline = Pipeline(root, self._modules, self.dependencies)
        self._chains = {
            route: self._pipeline.chain(route) for route in self.routes.routes
        }
        self._cors = CorsPolicy.from_settings(self.settings)
        #: Every open SSE stream (SPEC §6): ``len()``, iteration, ``count()``.
        self.streams = StreamRegistry(
            lambda: self.clock,
            max_streams=self.settings.max_streams,
            write_timeout=self.settings.write_timeout,
        )
        #: Named channels with history and replay (SPEC §11): ``publish``.
        self.hub = _make_hub(self.settings, lambda: self.clock)
        self._in_flight = 0
        self._quiet: list[Deferred[None]] = []
        self._base = [p for p in self.settings.base_path.split("/") if p]
        self._klein = Klein()
        # Our table decides precedence and empty segments; werkzeug must
        # neither merge nor redirect slashes.
        self._klein.url_map.merge_slashes = False
        self._klein.route("/", branch=True, strict_slashes=False)(self._dispatch)

    @property
    def clock(self) -> IReactorTime:
        """The ``IReactorTime`` handlers see as ``ctx.clock``."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def resource(self) -> IResource:
        """
        A leaf ``IResource`` serving the app; mount it anywhere in a
        ``twisted.web`` tree (the mount prefix is stripped).
        """
        return _AppResource(self, self._klein.resource())

    def site(self) -> OxianSite:
        """A ``Site`` serving the app at its root, refusing large bodies early."""
        return OxianSite(
            self.resource(),
            body_limit=self.settings.body_limit,
            cors=self._cors,
            reactor=self._reactor,
        )

    def service(self, listen: list[str] | tuple[str, ...] | None = None) -> IService:
        """
        An ``IService`` listening on each strports description of ``listen``
        (default: the ``listen`` setting), to add to a ``MultiService``.
        Stopping it stops listening and shuts the app down (`shutdown`).
        """
        parent = _AppService(self)
        site = self.site()
        for description in listen or self.settings.listen:
            strports_service(description, site, reactor=self._reactor).setServiceParent(
                parent
            )
        return parent

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """
        Shut down gracefully (SPEC §6.7): new SSE requests get ``503`` with
        ``Retry-After``; each open SSE stream gets a random ``retry`` of
        1–5 s and is closed; streams still open after ``grace`` seconds
        (``--shutdown-grace``) are cut. Fires once the streams have ended
        and requests in flight have finished, or when ``grace`` is over.
        `shutdown` starts with it.
        """
        if grace is None:
            grace = self.settings.shutdown_grace
        streams = self.streams.drain(grace)
        if not self._in_flight:
            return streams
        quiet: Deferred[None] = Deferred()
        self._quiet.append(quiet)

        def late(failure: Failure) -> None:
            failure.trap(TimeoutError)
            self._log.warn(
                "{count} requests still in flight after the shutdown grace",
                count=self._in_flight,
            )

        quiet.addTimeout(grace, self.clock).addErrback(late)
        return gatherResults([streams, quiet]).addCallback(lambda _: None)

    def shutdown(self, grace: float | None = None) -> Deferred[None]:
        """
        `drain`, then run the ``shutdown(deps)`` of every ``dependencies.py``
        whose factory ran, innermost first, each given ``grace`` seconds
        (at least one). The factories run again if requests come later.
        ``app.service()`` calls it when stopped; call it yourself when you
        mounted `resource` in your own site.
        """
        if grace is None:
            grace = self.settings.shutdown_grace
        drained = self.drain(grace)
        drained.addCallback(
            lambda _: self._pipeline.shutdown(max(grace, 1.0), self.clock)
        )
        return drained.addCallback(lambda _: self.hub.stop())

    # Request handling.

    def _request_ended(
        self, result: Failure | None, controller: ResponseController
    ) -> None:
        if isinstance(result, Failure):
            controller.connection_lost(result)
        self._in_flight -= 1
        if not self._in_flight:
            quiet, self._quiet = self._quiet, []
            for d in quiet:
                d.callback(None)

    def _cors_headers(self, request: Any) -> list[tuple[str, str]]:
        if self._cors is None:
            return []
        return self._cors.response_headers(header_value(request, b"origin"))

    def _segments(self, request: Any) -> list[str] | None:
        """The path below the base path, decoded, without empty segments."""
        segments = [p.decode("utf-8") for p in request.postpath if p]
        base = self._base
        if segments[: len(base)] != base:
            return None
        return segments[len(base) :]

    def _dispatch(self, request: Any) -> IResource:
        request_id = request_id_of(request)
        controller = ResponseController(
            request,
            settings=self.settings,
            streams=self.streams,
            hub=self.hub,
            request_id=request_id,
            clock=self.clock,
        )
        cors = self._cors_headers(request)
        if cors:
            controller.headers(dict(cors))
        self._in_flight += 1
        request.notifyFinish().addBoth(self._request_ended, controller)
        try:
            handler = self._run(request, controller, request_id)
        except Exception:
            controller.fail(Failure())
        else:
            if handler is not None:
                controller.attach(handler)
        # The controller finishes the request; Klein renders this and is
        # done with it, keeping nothing alive for the life of a stream.
        return _OWNED

    def _run(
        self, request: Any, controller: ResponseController, request_id: str
    ) -> Deferred[Any] | None:
        segments = self._segments(request)
        match = self.routes.match(segments) if segments is not None else None
        if match is None:
            raise HttpError(404, "Not Found")
        route = match.route
        controller.route = route.pattern
        handlers = self._handlers[route]
        method = request.method.decode("ascii")
        if self._cors is not None and _is_preflight(request):
            preflight = self._cors.preflight_headers(
                header_value(request, b"origin"),
                header_value(request, b"access-control-request-headers"),
                handlers.allow(),
            )
            controller.headers(dict(preflight))
        handler = handlers.for_method(method)
        if handler is None:
            allow = handlers.allow()
            if method == "OPTIONS":
                controller.headers({"Allow": allow})
                controller.send(None, status=204)
                return None
            raise HttpError(405, "Method Not Allowed", headers={"Allow": allow})
        if getattr(request, "body_too_large", False):
            raise HttpError(413, TOO_LARGE_MESSAGE)
        raw_body = request.content.read() if request.content is not None else b""
        if len(raw_body) > self.settings.body_limit:
            raise HttpError(413, TOO_LARGE_MESSAGE)
        query = parse_query(request.uri.partition(b"?")[2])
        body = parse_body(request.getHeader("content-type"), raw_body)
        ctx = self._context(
            request, controller, request_id, route, match.params, query, body, raw_body
        )
        data = build_data(body, query, match.params)
        return self._pipeline.run(self._chains[route], handler, data, ctx)

    def _context(
        self,
        request: Any,
        controller: ResponseController,
        request_id: str,
        route: Route,
        params: dict[str, Any],
        query: dict[str, Any],
        body: Any,
        raw_body: bytes,
    ) -> Context:
        info = RequestInfo(
            request, query=query, path_params=params, body=body, raw_body=raw_body
        )
        return Context(
            request=info,
            response=controller,
            dependencies=self.dependencies,
            request_id=request_id,
            route=route.pattern,
            clock=self.clock,
            app=self,
            hub=self.hub,
        )


def _make_hub(settings: Settings, clock: Callable[[], Any]) -> Hub | RedisHub:
    limits = {
        "history": settings.hub_history,
        "history_bytes": settings.hub_history_bytes,
        "history_age": settings.hub_history_age,
    }
    if settings.hub == "memory":
        return Hub(clock, **limits)
    return RedisHub(parse_redis_url(settings.hub), clock, **limits)


class _Owned(Resource):
    """What Klein renders for every request: the response is ours to finish."""

    isLeaf = True

    def render(self, request: Any) -> Any:
        return NOT_DONE_YET


_OWNED = _Owned()


class _AppService(MultiService):
    """The listening ports of an app; stopping it also shuts the app down."""

    def __init__(self, app: OxianApp) -> None:
        super().__init__()
        self._app = app

    def startService(self) -> None:
        self._app.streams.draining = False
        self._app.hub.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        ports = super().stopService()
        stopped = self._app.shutdown()
        return gatherResults([ports, stopped]).addCallback(lambda _: None)


class _AppResource(Resource):
    """
    The outermost layer: request id, undecodable paths, then Klein.
    """

    isLeaf = True

    def __init__(self, app: OxianApp, inner: IResource) -> None:
        super().__init__()
        self._app = app
        self._inner = inner

    def render(self, request: Any) -> Any:
        request.setHeader("X-Request-Id", request_id_of(request))
        try:
            for segment in request.postpath:
                segment.decode("utf-8")
        except UnicodeDecodeError:
            body = dump_json(error_body(400, "The URL path is not valid UTF-8"))
            request.setResponseCode(400)
            for name, value in self._app._cors_headers(request):
                request.setHeader(name, value)
            request.setHeader("Content-Type", "application/json; charset=utf-8")
            request.setHeader("Content-Length", str(len(body)))
            return body
        self._inner.render(request)
        # Klein is done with the request (the controller owns it now); its
        # adapter would otherwise live as long as a stream does.
        request.unsetComponent(IKleinRequest)
        return NOT_DONE_YET


def _is_preflight(request: Any) -> bool:
    return request.method == b"OPTIONS" and (
        request.getHeader(b"access-control-request-method") is not None
    )

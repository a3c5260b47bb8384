# -*- test-case-name: tests.test_app -*-
"""
``OxianApp``: a route tree served with twisted.web, and what an app owns
for all its requests: settings, the SSE registry, the hub, the end-of-turn
`oxian_tw._producer.Flusher`, the access log, the count of requests in
flight, and graceful shutdown.

Each request is served by `oxian_tw._dispatch.RouteResource`, which hands
it to a new `oxian_tw._exchange.Exchange`, its one owner.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import IO, Any, cast

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, TimeoutError, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from . import client, tokens
from ._accesslog import AccessLog, LoggerSink, StreamSink
from ._config import Settings, read_config_file, settings_from
from ._connection import Timeouts
from ._context import Dependencies
from ._dispatch import Dispatcher, RouteResource
from ._exchange import Exchange
from ._limits import default_max_connections, fd_limit
from ._listen import Listener
from ._policy import Decisions
from ._producer import Flusher
from ._ratelimit import RateLimits
from ._registry import StreamRegistry
from ._requestid import TrustedProxies
from ._response import ResponseController
from ._results import Response
from ._runs import RUN_HISTORY_EVENTS, Runs
from ._site import OxianSite
from ._version import __version__
from .hub import Hub, IHub, describe_hub, make_hub
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import Metrics

#: `OxianApp._request_began` without an access log or metrics: not timed.
_UNMEASURED = -1.0


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
        #: The app-level dependencies, the parent of the root folder's.
        self.dependencies = Dependencies(dependencies)
        self._flusher = Flusher(lambda: self.clock)
        #: Every open SSE stream (SPEC §6): ``len()``, iteration, ``count()``.
        self.streams = StreamRegistry(
            lambda: self.clock,
            max_streams=self.settings.max_streams,
            write_timeout=self.settings.write_timeout,
        )
        settings = self.settings
        #: The peers (``--trusted-proxy``) whose forwarded headers are believed.
        self.trusted_proxies = TrustedProxies(settings.trusted_proxy)
        #: The app's hub (`IHub`, SPEC §11): ``ctx.hub``.
        self.hub: IHub = make_hub(
            settings.hub,
            lambda: self.clock,
            history=settings.hub_history,
            history_bytes=settings.hub_history_bytes,
            history_age=settings.hub_history_age,
            presence_ttl=settings.hub_presence_ttl,
        )
        #: The app's runs (SPEC §15): ``ctx.runs``. Their channels live in
        #: a hub of their own, of the same kind, with runs' history bounds.
        self.runs = Runs(
            cast(
                Hub,
                make_hub(
                    settings.hub,
                    lambda: self.clock,
                    history=RUN_HISTORY_EVENTS,
                    history_bytes=settings.runs_history_bytes,
                    history_age=settings.runs_retention,
                    presence_ttl=settings.hub_presence_ttl,
                ),
            ),
            lambda: self.clock,
            lease=settings.runs_lease,
            retention=settings.runs_retention,
        )
        if settings.token_key_file is not None:
            tokens.configure(tokens.KeyRing.from_file(settings.token_key_file))
        #: ``--rate-connections``, ``--rate-requests``, ``--rate-publishes``.
        self.rate_limits = RateLimits.from_settings(
            settings, lambda: self.clock.seconds()
        )
        #: The channel policy's kept decisions (`oxian_tw._policy`).
        self.channel_decisions = Decisions(settings.channel_policy_ttl)
        self._dispatcher = Dispatcher(self, root)
        #: The route table, in precedence order.
        self.routes = self._dispatcher.routes
        self._modules = self._dispatcher.modules
        self._metrics: Metrics | None = None
        fixed: dict[bytes, Callable[[], Response]] = {}
        if settings.metrics is not None:
            metrics = self._metrics = Metrics(self)
            fixed[settings.metrics.encode()] = lambda: Response(
                metrics.exposition(), headers={"Content-Type": METRICS_TYPE}
            )
        if settings.client_script is not None:
            fixed[settings.client_script.encode()] = lambda: Response(
                client.script(), headers={"Content-Type": client.CONTENT_TYPE}
            )
        run: Callable[[Exchange], Any] = self._dispatcher.run
        if fixed:
            run = _serving_fixed(run, fixed)
        self._resource = RouteResource(self, run)
        self._access_log: AccessLog | None = None
        if self.settings.access_log != "off":
            self._access_log = AccessLog(self.settings.access_log, LoggerSink())
        self._sites: list[OxianSite] = []
        self._in_flight = 0
        self._quiet: list[Deferred[None]] = []
        #: The shutdown grace ran out and open connections were cut.
        self._cut = False

    @property
    def in_flight(self) -> int:
        """Requests being served now: not yet answered, or still streaming."""
        return self._in_flight

    @property
    def open_connections(self) -> int:
        """Client connections open now on the app's own sites."""
        return sum(site.open_connections for site in self._sites)

    @property
    def clock(self) -> IReactorTime:
        """The ``IReactorTime`` handlers see as ``ctx.clock``."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    @property
    def metrics(self) -> Metrics:
        """
        The app's Prometheus metrics (`oxian_tw.metrics.Metrics`; its
        ``registry`` to serve or scrape). Requests are recorded from the
        first use on (from startup with ``--metrics``).
        """
        if self._metrics is None:
            self._metrics = Metrics(self)
        return self._metrics

    def resource(self) -> IResource:
        """
        A leaf ``IResource`` serving the app; mount it anywhere in a
        ``twisted.web`` tree (the mount prefix is stripped).
        """
        return self._resource

    def response(self, request: IRequest) -> ResponseController:
        """
        A response controller for any ``twisted.web`` request (a Klein
        route's, say), with the app's settings, registry and hub: its
        `stream`, `pipe`, `send_file` and `sse` work exactly as a file
        route's ``ctx.response``. Return ``NOT_DONE_YET`` from the route:
        the controller finishes the request. Such a stream has no handler to
        outlive: it ends when closed, when the client leaves, or at
        shutdown.
        """
        owner = Exchange(self, request, foreign=True)
        cors = self._dispatcher.cors_headers(request)
        if cors:
            owner.set_headers(dict(cors))
        return owner.response

    def site(self, root: IResource | None = None) -> OxianSite:
        """
        A ``Site`` serving the app at its root, or ``root`` (a Klein app's
        resource that mounts `resource`, say): request bodies over
        ``--body-limit`` refused early, and its connections closed by the
        app's shutdown once what was written to them has left.
        """
        site = OxianSite(
            self._resource if root is None else root,
            body_limit=self.settings.body_limit,
            cors=self._dispatcher.cors,
            access_log=self._access_log,
            refusal=self._dispatcher.refusal,
            max_connections=self.settings.max_connections
            or default_max_connections(fd_limit()),
            timeouts=Timeouts.from_settings(self.settings),
            trusted_proxies=self.trusted_proxies,
            routes_root=root is None,
            http_parser=self.settings.http_parser,
            turn_end=self._flusher,
            connection_limit=(
                None
                if self.rate_limits.connections is None
                else self.rate_limits.connections.take
            ),
            reactor=self._reactor,
        )
        self._sites.append(site)
        return site

    def _log_summary(self) -> None:
        """What is being served, in the log of a starting service."""
        settings = self.settings
        self._log.info(
            "oxian_tw {version}: {count} routes from {tree}",
            version=__version__,
            count=len(self.routes.routes),
            tree=os.path.abspath(self.settings.routes),
        )
        self._log.info(
            "oxian_tw: hub {hub} (history {history} events, {history_bytes} "
            "bytes, {history_age:g} s per channel)",
            hub=describe_hub(settings.hub),
            history=settings.hub_history,
            history_bytes=settings.hub_history_bytes,
            history_age=settings.hub_history_age,
        )
        self._log.info(
            "oxian_tw: limits: body {body_limit} bytes, write buffer "
            "{buffer_limit} bytes, SSE budget {sse_budget} bytes, "
            "{max_connections} connections, {max_streams} streams, head "
            "{header_timeout:g} s, body {body_timeout:g} s, SSE ping "
            "{ping:g} s, write deadline {write_timeout:g} s",
            body_limit=settings.body_limit,
            buffer_limit=settings.buffer_limit,
            sse_budget=settings.sse_budget,
            max_connections=settings.max_connections or "unlimited",
            max_streams=settings.max_streams or "unlimited",
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            ping=settings.ping,
            write_timeout=settings.write_timeout,
        )

    def service(
        self,
        listen: list[str] | tuple[str, ...] | None = None,
        *,
        root: IResource | None = None,
    ) -> IService:
        """
        An ``IService`` listening on each strports description of ``listen``
        (default: the ``listen`` setting) with `site`, of the app or of
        ``root``, to add to a ``MultiService``. Stopping it stops listening
        and shuts the app down (`shutdown`).
        """
        parent = _AppService(self)
        site = self.site(root)
        for description in listen or self.settings.listen:
            Listener(description, site, self._reactor).setServiceParent(parent)  # type: ignore[no-untyped-call]
        return parent

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """
        Shut down gracefully (SPEC §6.7): new SSE requests get ``503`` with
        ``Retry-After``; each open SSE stream gets a random ``retry`` of
        1–5 s and is closed; requests in flight finish; then each connection
        of the app's sites is closed once what was written to it has left
        the socket. Whatever is still open after ``grace`` seconds
        (``--shutdown-grace``) is cut. `shutdown` starts with it.
        """
        if grace is None:
            grace = self.settings.shutdown_grace
        clock = self.clock
        deadline = clock.seconds() + grace
        waits = [self.streams.drain(grace)]
        if self._in_flight:
            quiet: Deferred[None] = Deferred()
            self._quiet.append(quiet)

            def late(failure: Failure) -> None:
                failure.trap(TimeoutError)
                self._log.warn(
                    "{count} requests still in flight after the shutdown grace",
                    count=self._in_flight,
                )

            waits.append(quiet.addTimeout(grace, clock).addErrback(late))

        def close(_: Any) -> Deferred[Any]:
            left = max(deadline - clock.seconds(), 0.0)
            return gatherResults(
                [site.close_all(left, clock, self._cutting) for site in self._sites]
            )

        return gatherResults(waits).addCallback(close).addCallback(lambda _: None)

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
        # Runs made here end first (as interrupted): their clients are told.
        drained = self.runs.stop_service()
        drained.addCallback(lambda _: self.drain(grace))
        drained.addCallback(
            lambda _: self._dispatcher.pipeline.shutdown(max(grace, 1.0), self.clock)
        )
        drained.addCallback(lambda _: self.hub.stop())
        drained.addCallback(lambda _: self.runs.hub.stop())
        return drained.addBoth(self._shut_down)

    def _shut_down(self, result: Any) -> Any:
        if self._access_log is not None:
            # Nothing left to batch for: write lines as they come.
            self._access_log.sink.close()
        return result

    def _log_requests_to(self, stream: IO[str]) -> None:
        """Write access log lines straight to ``stream`` (`StreamSink`)."""
        if self._access_log is not None:
            self._access_log.sink = StreamSink(stream, self._flusher.add)

    # The request owners' side.

    def _request_began(self) -> float:
        """
        A request is in flight; returns the time it began (for the access
        log and metrics: `_UNMEASURED` when there are neither, so that no
        clock is read).
        """
        self._in_flight += 1
        if self._access_log is None and self._metrics is None:
            return _UNMEASURED
        return self.clock.seconds()

    def _cutting(self) -> None:
        """The shutdown grace is over: what is cut now ends by the shutdown."""
        self._cut = True

    def _request_ended(self, owner: Exchange, started: float, how: str) -> None:
        """A request's response ended (`oxian_tw._accesslog.ENDINGS`)."""
        if self._cut and how == "client_gone":
            # The connection was cut by the shutdown, not left by its client.
            how = "shutdown"
        access_log = self._access_log
        metrics = self._metrics
        if access_log is not None or metrics is not None:
            request = owner.request
            now = self.clock.seconds()
            if access_log is not None:
                access_log.record(
                    request,
                    owner.request_id,
                    request.code,
                    started,
                    now,
                    how,
                    owner.client_request_id,
                )
            # One that began before metrics were asked for was not timed.
            if metrics is not None and started != _UNMEASURED:
                metrics._request(
                    owner.route or "", request.code, now - started, request.sentLength
                )
        self._in_flight -= 1
        if not self._in_flight and self._quiet:
            quiet, self._quiet = self._quiet, []
            for d in quiet:
                d.callback(None)


class _AppService(MultiService):
    """The listening ports of an app; stopping it also shuts the app down."""

    def __init__(self, app: OxianApp) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._app = app

    def privilegedStartService(self) -> None:
        # Before the listeners say where they listen.
        self._app._log_summary()
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        self._app.streams.draining = False
        self._app._cut = False
        self._app.hub.start()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        ports = super().stopService()  # type: ignore[no-untyped-call]
        stopped = self._app.shutdown()
        return gatherResults([ports or succeed(None), stopped]).addCallback(
            lambda _: None
        )


def _serving_fixed(
    run: Callable[[Exchange], Any],
    fixed: dict[bytes, Callable[[], Response]],
) -> Callable[[Exchange], Any]:
    """
    ``run``, except that ``GET`` (or ``HEAD``) of a path of ``fixed``
    answers what it makes (``--metrics``, ``--client-script``).
    """

    def serve(controller: Exchange) -> Any:
        request = controller.request
        answer = fixed.get(request.path)
        if answer is not None and request.method in (b"GET", b"HEAD"):
            return answer()
        return run(controller)

    return serve

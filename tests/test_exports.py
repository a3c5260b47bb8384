"""
The public surface (SPEC §1): the names re-exported from ``oxian_tw``, and
the exact public attributes of every object a handler receives, so that a
framework-only method cannot drift into a user's tab-completion.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import oxian_tw
from oxian_tw import (
    _app,
    _config,
    _context,
    _errors,
    _eventstream,
    _producer,
    _response,
    _results,
)

from .helpers import RoutesTestCase


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


class ExportTests(SynchronousTestCase):
    """``oxian_tw`` re-exports its public names."""

    def test_identity(self) -> None:
        """Each public name is the implementation's object."""
        self.assertIs(oxian_tw.OxianApp, _app.OxianApp)
        self.assertIs(oxian_tw.HttpError, _errors.HttpError)
        self.assertIs(oxian_tw.HubUnavailable, _errors.HubUnavailable)
        self.assertIs(oxian_tw.HubTimeout, _errors.HubTimeout)
        self.assertIs(oxian_tw.StreamClosed, _errors.StreamClosed)
        self.assertIs(oxian_tw.RouteTreeError, _errors.RouteTreeError)
        self.assertIs(oxian_tw.ConfigError, _config.ConfigError)
        self.assertIs(oxian_tw.Response, _results.Response)
        self.assertIs(oxian_tw.Stream, _producer.Stream)
        self.assertIs(oxian_tw.EventStream, _eventstream.EventStream)
        self.assertIs(oxian_tw.Context, _context.Context)

    def test_all(self) -> None:
        """``__all__`` lists exactly the public names."""
        self.assertEqual(
            set(oxian_tw.__all__),
            {
                "AsyncioReactorRequired",
                "ConfigError",
                "Context",
                "EventStream",
                "HttpError",
                "HubTimeout",
                "HubUnavailable",
                "OxianApp",
                "Response",
                "RouteTreeError",
                "RunHandle",
                "Runs",
                "Stream",
                "StreamClosed",
                "__version__",
            },
        )
        for name in oxian_tw.__all__:
            self.assertTrue(hasattr(oxian_tw, name), name)


class PublicAttributeTests(SynchronousTestCase):
    """Exactly these, on the objects users get (SPEC §4, §5, §3)."""

    def test_response_controller(self) -> None:
        self.assertEqual(
            public(_response.ResponseController),
            {
                "headers",
                "pipe",
                "redirect",
                "send",
                "send_file",
                "sse",
                "status",
                "stream",
            },
        )

    def test_stream(self) -> None:
        self.assertEqual(
            public(_producer.Stream),
            {
                "close",
                "closed",
                "done",
                "pipe",
                "write",
                # IPushProducer, called by the transport.
                "pauseProducing",
                "resumeProducing",
                "stopProducing",
            },
        )

    def test_event_stream(self) -> None:
        self.assertEqual(
            public(_eventstream.EventStream),
            {
                "close",
                "closed",
                "comment",
                "done",
                "dropped",
                "lags",
                "last_event_id",
                "ping",
                "request_id",
                "route",
                "send",
                "slow_consumer",
                "subscribe",
            },
        )

    def test_context(self) -> None:
        self.assertEqual(
            public(_context.Context),
            {
                "app",
                "clock",
                "dependencies",
                "hub",
                "runs",
                "request",
                "request_id",
                "response",
                "route",
                "sleep",
            },
        )


class MorePublicAttributeTests(RoutesTestCase):
    """``ctx.request``, the app and its hub: exactly these too."""

    routes = {"index.py": "def GET(data, ctx):\n    return 1\n"}

    def test_request_info(self) -> None:
        self.assertEqual(
            public(_context.RequestInfo),
            {
                "body",
                "client",
                "headers",
                "method",
                "path",
                "path_params",
                "query",
                "raw",
                "raw_body",
                "url",
            },
        )

    def test_app(self) -> None:
        self.assertEqual(
            {n for n in dir(self.app) if not n.startswith("_")},
            {
                "channel_decisions",
                "clock",
                "rate_limits",
                "dependencies",
                "drain",
                "hub",
                "runs",
                "in_flight",
                "metrics",
                "open_connections",
                "resource",
                "response",
                "routes",
                "service",
                "settings",
                "shutdown",
                "site",
                "streams",
                "trusted_proxies",
            },
        )

    def test_hubs(self) -> None:
        """The hub interface and nothing else (the Redis one names its address)."""
        from oxian_tw.hub import IHub, MemoryHub, RedisHub

        self.assertEqual(public(MemoryHub), set(IHub.names()))
        self.assertEqual(public(RedisHub), set(IHub.names()))


class ReadOnlyDependencyTests(RoutesTestCase):
    """SPEC §3: ``ctx.dependencies`` is read-only, by key and by attribute."""

    routes = {
        "dependencies.py": """
            def dependencies(parent):
                return {"level": 1}
        """,
        "by_attribute.py": """
            def GET(data, ctx):
                ctx.dependencies.level = "x"
        """,
        "by_key.py": """
            def GET(data, ctx):
                ctx.dependencies["level"] = "x"
        """,
        "delete.py": """
            def GET(data, ctx):
                del ctx.dependencies.level
        """,
        "read.py": """
            def GET(data, ctx):
                deps = ctx.dependencies
                return {"level": deps.level, "key": deps["level"]}
        """,
    }

    def test_writes_fail(self) -> None:
        for path in ("/by_attribute", "/by_key", "/delete"):
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.code, 500)
        self.flushLoggedErrors(TypeError, AttributeError)
        self.assertEqual(self.get("/read").json(), {"level": 1, "key": 1})

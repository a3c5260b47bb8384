"""
Both hubs (the core over memory and over Redis) provide `IHub`, the streams
they deliver to provide `ISubscriber`, and the app, context and streams
know a hub only through them.
"""

from __future__ import annotations

import inspect

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from oxian_tw import _eventstream
from oxian_tw.hub import IHub, ISubscriber, MemoryHub, RedisHub, make_hub
from oxian_tw.hub._address import parse_redis_url

from .helpers import RoutesTestCase


class BackendTests(SynchronousTestCase):
    def test_memory(self) -> None:
        clock = Clock()
        verifyClass(IHub, MemoryHub)
        self.assertTrue(verifyObject(IHub, MemoryHub(lambda: clock)))

    def test_redis(self) -> None:
        clock = Clock()
        verifyClass(IHub, RedisHub)
        hub = RedisHub(parse_redis_url("redis://127.0.0.1:1/0"), lambda: clock)
        self.assertTrue(verifyObject(IHub, hub))

    def test_same_signatures(self) -> None:
        """The two backends take the same arguments for each interface method."""
        from zope.interface.interface import Method

        for name in IHub.names():
            if not isinstance(IHub[name], Method):
                continue
            self.assertEqual(
                list(inspect.signature(getattr(MemoryHub, name)).parameters),
                list(inspect.signature(getattr(RedisHub, name)).parameters),
                name,
            )

    def test_make_hub(self) -> None:
        clock = Clock()
        limits = {
            "history": 1,
            "history_bytes": 1,
            "history_age": 1.0,
            "presence_ttl": 1.0,
        }
        self.assertIsInstance(make_hub("memory", lambda: clock, **limits), MemoryHub)
        self.assertIsInstance(
            make_hub("redis://localhost/1", lambda: clock, **limits), RedisHub
        )


class StreamTests(RoutesTestCase):
    routes = {
        "sub.py": """
            streams = []

            def GET(data, ctx):
                streams.append(ctx.response.sse(channels=["news"]))
        """
    }

    def test_app_hub(self) -> None:
        self.assertTrue(verifyObject(IHub, self.app.hub))

    def test_event_stream_is_a_subscriber(self) -> None:
        self.get("/sub")
        (stream,) = self.app.streams
        self.assertTrue(verifyObject(ISubscriber, stream))

    def test_streams_know_no_hub(self) -> None:
        """
        An event stream holds neither the hub nor the registry, and imports
        nothing of them but the interface it provides.
        """
        source = inspect.getsource(_eventstream)
        imports = [line for line in source.splitlines() if "import" in line]
        self.assertIn("from .hub._interface import ISubscriber", imports)
        for line in imports:
            for name in ("_registry", "_memory", "_redis", "IHub", "StreamRegistry"):
                self.assertNotIn(name, line)
        self.assertFalse(
            {"_hub", "_registry"} & set(_eventstream.EventStream.__slots__)
        )

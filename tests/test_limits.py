"""
Tests for the file-descriptor limit, the connection cap derived from it
(`oxian_tw._limits`) and the cap at the site.
"""

from __future__ import annotations

import gc
import json
import resource
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp, _limits
from oxian_tw.tap import Options, makeService

from .helpers import RoutesTestCase, make_tree


class LimitTests(SynchronousTestCase):
    def test_default(self) -> None:
        """The limit less the reserve, never below a floor."""
        self.assertEqual(_limits.default_max_connections(1024), 1024 - 128)
        self.assertEqual(_limits.default_max_connections(65536), 65536 - 128)
        self.assertEqual(_limits.default_max_connections(100), 64)

    def test_raise_to_hard(self) -> None:
        """The soft limit goes up to the hard one."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lower = min(soft, hard, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        expected = hard if hard != resource.RLIM_INFINITY else 2**20
        self.assertEqual(_limits.raise_fd_limit(), expected)
        self.assertEqual(_limits.fd_limit(), expected)

    def test_refused_raise(self) -> None:
        """A kernel that refuses the raise leaves the soft limit in force."""

        def refuse(*args: Any) -> None:
            raise ValueError("not allowed")

        self.patch(_limits.resource, "setrlimit", refuse)
        self.patch(_limits.resource, "getrlimit", lambda _: (256, 4096))
        self.assertEqual(_limits.raise_fd_limit(), 256)

    def test_no_resource_module(self) -> None:
        """Without ``resource`` (Windows): an assumed 1024, nothing raised."""
        self.patch(_limits, "resource", None)
        self.assertEqual(_limits.fd_limit(), 1024)
        self.assertEqual(_limits.raise_fd_limit(), 1024)


class SiteCapTests(RoutesTestCase):
    """
    At ``--max-connections`` a new connection evicts the one that has waited
    longest with no request handled and no stream open (SPEC §12.1); only
    when every connection is busy is it answered 503.
    """

    routes = {
        "index.py": "def GET(data, ctx):\n    return 'hi'\n",
        "slow.py": """
            async def GET(data, ctx):
                await ctx.sleep(10)
                return "slow"
        """,
    }
    config = {"max-connections": 2}

    def connect(self, site: Any) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        protocol = site.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    def warnings(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if "--max-connections" in e.get("log_format", "")]

    def test_evicts_the_longest_waiting(self) -> None:
        """
        Two idle connections at a cap of 2: a third is served, and the one
        that waited longest (the first) is cut; the one still sending its
        head counts as waiting too.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        site = self.app.site()
        first, first_transport = self.connect(site)
        self.clock.advance(1)
        second, second_transport = self.connect(site)
        second.dataReceived(b"GET / HTTP/1.1\r\n")  # a head, dribbling
        self.clock.advance(1)
        third, third_transport = self.connect(site)
        self.assertTrue(first_transport.disconnected)
        self.assertFalse(second_transport.disconnecting)
        self.assertEqual(site.open_connections, 2)
        third.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(third_transport.value().startswith(b"HTTP/1.1 200 "))
        # Next to go: the dribbling head (waiting since t=1), before the
        # keep-alive connection that was just served (waiting since t=2).
        self.connect(site)
        self.assertTrue(second_transport.disconnected)
        self.assertFalse(third_transport.disconnected)
        self.assertEqual(len(self.warnings(events)), 1)

    def test_busy_connections_are_kept(self) -> None:
        """
        Every connection handling a request: a new one gets a 503 with
        ``Retry-After`` and is closed; a warning is logged once however
        many are refused; once a connection closes, a new one is served.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        site = self.app.site()
        self.assertEqual(site.max_connections, 2)
        busy = []
        for _ in range(2):
            protocol, transport = self.connect(site)
            protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            busy.append((protocol, transport))
        for _ in range(3):
            _, refused = self.connect(site)
            head, body = refused.value().split(b"\r\n\r\n", 1)
            self.assertTrue(head.startswith(b"HTTP/1.1 503 "))
            self.assertIn(b"Retry-After: 1", head)
            self.assertEqual(
                json.loads(body), {"error": {"message": "Too many connections"}}
            )
            self.assertTrue(refused.disconnecting)
        for _, transport in busy:
            self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.warnings(events)), 1)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        busy[0][0].connectionLost(Failure(ConnectionDone()))
        protocol, transport = self.connect(site)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.clock.advance(10)


class DefaultCapTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(gc.set_threshold, *gc.get_threshold())

    def test_tap_derives_and_logs(self) -> None:
        """
        ``twistd oxian`` raises the descriptor limit, derives the cap from
        it and logs both; ``--max-connections`` wins.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        routes = make_tree(self.mktemp(), {"index.py": ""})
        for args, expected in [
            ([], _limits.default_max_connections(_limits.raise_fd_limit())),
            (["--max-connections", "10"], 10),
        ]:
            options = Options()
            options.parseOptions(["--routes", routes, "--listen", "tcp:0", *args])
            service = makeService(options)
            (listener,) = list(service)
            self.assertEqual(listener.factory.max_connections, expected)
            (event,) = [e for e in events if "max_connections" in e]
            self.assertEqual(event["max_connections"], expected)
            self.assertEqual(event["limit"], _limits.fd_limit())
            events.clear()


class GCThresholdTests(SynchronousTestCase):
    """``--gc-threshold``: the young generation's, set by ``twistd oxian``."""

    def setUp(self) -> None:
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(700, 10, 10)

    def test_set(self) -> None:
        self.assertEqual(_limits.set_gc_threshold(5000), (5000, 10, 10))
        self.assertEqual(gc.get_threshold(), (5000, 10, 10))

    def test_zero_keeps_pythons(self) -> None:
        self.assertEqual(_limits.set_gc_threshold(0), (700, 10, 10))
        self.assertEqual(gc.get_threshold(), (700, 10, 10))

    def test_tap_sets_and_logs(self) -> None:
        """The default, then ``--gc-threshold``; an app alone sets nothing."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        routes = make_tree(self.mktemp(), {"index.py": ""})
        OxianApp(routes, config={"gc-threshold": 123}, reactor=Clock())
        self.assertEqual(gc.get_threshold(), (700, 10, 10))
        for args, expected in [
            ([], _limits.GC_THRESHOLD),
            (["--gc-threshold", "20000"], 20000),
        ]:
            options = Options()
            options.parseOptions(["--routes", routes, "--listen", "tcp:0", *args])
            makeService(options)
            self.assertEqual(gc.get_threshold(), (expected, 10, 10))
            (event,) = [e for e in events if "thresholds" in e]
            self.assertEqual(event["thresholds"], (expected, 10, 10))
            events.clear()

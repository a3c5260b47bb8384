"""
Prometheus metrics (issue 18): ``twistd oxian --metrics /metrics`` scraped
over real TCP after a few requests, an open stream and a slow-consumer
kick, and parsed with prometheus-client's own parser; and nothing recorded
(no clock read) until metrics are asked for.
"""

from __future__ import annotations

import socket
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import _app
from oxian_tw.metrics import CONTENT_TYPE

from .helpers import RoutesTestCase, TwistdProcess, assert_clean_exit, make_tree
from .sse_clients import SseClient, pump

ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hi"
    """,
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse()
    """,
    "flood.py": """
        def GET(data, ctx):
            sse = ctx.response.sse()
            for n in range(100):
                sse.send("x" * 10000)
    """,
}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


class ScrapeTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = make_tree(self.mktemp(), ROUTES)
        self.server = TwistdProcess(
            "--routes", root, "--metrics", "/metrics", "--sse-budget", "65536"
        )
        self.addCleanup(self.server.stop)

    def test_scrape(self) -> None:
        for _ in range(3):
            self.assertEqual(self.server.request("GET", "/hello")[2], b"hi")
        stream = SseClient(self.server.port, "/events")
        pump([stream], lambda: stream.status == 200)
        flood = socket.create_connection(("127.0.0.1", self.server.port))
        flood.sendall(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
        self.server.wait_for("SSE client too slow", 10)
        status, headers, body = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], CONTENT_TYPE)
        families = {
            f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))
        }
        duration = "oxian_http_request_duration_seconds"
        self.assertEqual(families[duration].type, "histogram")
        self.assertEqual(
            sample(families, duration + "_count", route="/hello", status="200"), 3
        )
        self.assertEqual(
            sample(families, "oxian_http_response_bytes_total", route="/hello"), 6
        )
        self.assertEqual(sample(families, "oxian_sse_streams", route="/events"), 1)
        self.assertGreaterEqual(
            sample(families, "oxian_sse_slow_consumer_disconnects_total"), 1
        )
        self.assertGreater(sample(families, "process_resident_memory_bytes"), 0)
        self.assertGreater(sample(families, "process_open_fds"), 0)
        self.assertEqual(sample(families, "oxian_hub_published_total"), 0)
        # The scrape is not a route: HEAD too, nothing else.
        self.assertEqual(self.server.request("POST", "/metrics")[0], 404)
        stream.close()
        flood.close()
        assert_clean_exit(self, self.server)


class OffByDefaultTests(RoutesTestCase):
    routes = {"hello.py": ROUTES["hello.py"]}
    config: dict[str, Any] = {"access-log": "off"}

    def test_nothing_recorded_until_asked(self) -> None:
        self.assertIsNone(self.app._metrics)
        self.get("/hello")
        # Not timed: no clock read.
        self.assertEqual(self.app._request_began(), _app._UNMEASURED)
        self.app._in_flight -= 1
        # Asked for (embedding): recorded from then on, in its own registry.
        registry = self.app.metrics.registry
        # (At time 0 on the test's clock too.)
        self.get("/hello")
        self.assertEqual(
            registry.get_sample_value(
                "oxian_http_request_duration_seconds_count",
                {"route": "/hello", "status": "200"},
            ),
            1,
        )

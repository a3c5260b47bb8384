"""
Python SSE client libraries against a real ``twistd -n oxian``, each with
the loop its documentation shows (``json.loads(event.data)`` on every
event): httpx-sse, sseclient-py and requests-sse. The stream opens with
``retry:`` (which must not make an event of its own: httpx-sse 0.4.3
turned a block of ``retry:`` alone into an event with empty data) and the
server's shutdown sends ``retry:`` again before it closes.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, make_tree

ROUTES = {
    "numbers.py": """
        async def GET(data, ctx):
            sse = ctx.response.sse(retry=2000, keep_open=False)
            for n in range(3):
                await sse.send({"n": n}, event="number", id=str(n))
    """,
    "forever.py": """
        def GET(data, ctx):
            sse = ctx.response.sse(retry=2000)
            sse.send({"n": 0}, event="number", id="0")
    """,
}


class Readers:
    """Each library's documented loop, against ``self.url``."""

    url: str

    def httpx_sse(
        self, path: str, first: threading.Event | None = None, count: int = 0
    ) -> list[Any]:
        import httpx
        from httpx_sse import connect_sse

        seen = []
        with httpx.Client(timeout=10) as client:
            with connect_sse(client, "GET", self.url + path) as source:
                for event in source.iter_sse():
                    seen.append(json.loads(event.data))
                    if first is not None:
                        first.set()
                    if len(seen) == count:
                        break
        return seen

    def sseclient_py(self, path: str, count: int = 0) -> list[Any]:
        import requests
        import sseclient

        response = requests.get(
            self.url + path,
            stream=True,
            headers={"Accept": "text/event-stream"},
            timeout=10,
        )
        seen = []
        with response:
            for event in sseclient.SSEClient(response).events():
                seen.append(json.loads(event.data))
                if len(seen) == count:
                    break
        return seen

    def requests_sse(self, path: str, count: int = 3) -> list[Any]:
        from requests_sse import EventSource

        seen = []
        with EventSource(self.url + path, timeout=10, max_connect_retry=0) as source:
            for event in source:
                seen.append(json.loads(event.data))
                if len(seen) == count:
                    break
        return seen


class LibraryTests(Readers, SynchronousTestCase):
    def setUp(self) -> None:
        root = make_tree(self.mktemp(), ROUTES)
        self.server = TwistdProcess("--routes", root, "--shutdown-grace", "1")
        self.addCleanup(self.server.stop)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def test_each_library(self) -> None:
        expected = [{"n": 0}, {"n": 1}, {"n": 2}]
        self.assertEqual(self.httpx_sse("/numbers"), expected)
        self.assertEqual(self.sseclient_py("/numbers"), expected)
        self.assertEqual(self.requests_sse("/numbers"), expected)

    def test_shutdown_retry_is_no_event(self) -> None:
        """The shutdown's retry: closes the stream without an empty event."""
        seen: list[Any] = []
        failures: list[BaseException] = []
        first = threading.Event()

        def read() -> None:
            try:
                seen.extend(self.httpx_sse("/forever", first))
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)

        reader = threading.Thread(target=read)
        reader.start()
        self.assertTrue(first.wait(10))
        self.server.process.send_signal(signal.SIGTERM)
        reader.join(15)
        self.assertFalse(reader.is_alive())
        self.assertEqual(failures, [])
        self.assertEqual(seen, [{"n": 0}])


class ExampleAppTests(Readers, SynchronousTestCase):
    """
    The same loops on the example app's streams: its dashboard feed (an
    event at once, then every ``interval``) and its stock ticker.
    """

    def setUp(self) -> None:
        import os

        examples = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        self.server = TwistdProcess(
            "--routes",
            os.path.join(examples, "routes"),
            env={"OXIAN_EXAMPLES_DB": os.path.join(work, "examples.sqlite3")},
        )
        self.addCleanup(self.server.stop)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def test_each_library(self) -> None:
        path = "/dashboard/metrics?interval=0.1"
        for read in (self.httpx_sse, self.sseclient_py, self.requests_sse):
            with self.subTest(library=read.__name__):
                metrics = read(path, count=3)
                self.assertEqual(len(metrics), 3)
                for sample in metrics:
                    self.assertIn("memory_rss_bytes", sample)
                ticker = read("/stocks/AAPL/stream?interval=0.1", count=1)
                self.assertEqual(ticker[0]["symbol"], "AAPL")

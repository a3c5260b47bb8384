"""
Klein routes hand off to oxian_tw's streams (SPEC §13): the runnable
example ``examples/klein_app.py`` — a real Klein app mounting the example
file routes with ``ox.resource()`` and serving its own routes with
``ox.response(request)`` — through the in-memory test client on a
deterministic clock: backpressure, the registry, heartbeats, the hub and
the drain hold as for file routes.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.sse import Event
from oxian_tw.testing import TestClient

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "examples",
    "klein_app.py",
)


def load_example() -> ModuleType:
    """``examples/klein_app.py`` as a module."""
    spec = importlib.util.spec_from_file_location("klein_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KleinAppTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        database = os.path.join(os.path.abspath(self.mktemp()), "db.sqlite3")
        os.makedirs(os.path.dirname(database))
        self.example = load_example()
        self.web, self.ox = self.example.make_app(
            self.clock, {"database_path": database}
        )
        self.client = TestClient(self.ox, resource=self.web.resource())

    def get(self, path: str, **kwargs: object) -> object:
        return self.successResultOf(self.client.get(path, **kwargs))

    def test_file_routes_mounted(self) -> None:
        """``/api/...`` is the file routes, their 404 JSON included."""
        response = self.get("/api/users/42")
        self.successResultOf(response.finished())
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json()["id"], 42)
        self.assertIsNotNone(response.headers.get("x-request-id"))
        missing = self.get("/api/nope")
        self.successResultOf(missing.finished())
        self.assertEqual(missing.json(), {"error": {"message": "Not Found"}})

    def test_sse_hub_registry_heartbeat(self) -> None:
        """
        The Klein route's SSE stream stays open after the route returned
        ``NOT_DONE_YET`` (Klein's own finish does not end it), is in the
        registry, gets hub events and heartbeats, and resumes from its id.
        """
        first = self.get("/ticks")
        self.assertEqual(
            first.headers.get("content-type"), "text/event-stream; charset=utf-8"
        )
        self.assertFalse(first.complete)
        self.assertEqual(self.ox.streams.count("/ticks"), 1)
        posted = self.successResultOf(self.client.post("/ticks"))
        self.successResultOf(posted.finished())
        event_id = posted.json()["id"]
        self.assertEqual(first.events(), [Event('{"tick":1}', id=event_id)])
        self.client.advance(18.75)
        self.assertTrue(first.body.endswith(b":\n"))
        self.successResultOf(self.client.post("/ticks"))
        resumed = self.get("/ticks", headers={"Last-Event-ID": event_id})
        self.assertEqual([e.data for e in resumed.events()], ['{"tick":2}'])
        first.disconnect()
        self.assertEqual(self.ox.streams.count("/ticks"), 1)

    def test_drain(self) -> None:
        """Shutdown gives the Klein route's stream a retry and ends it."""
        response = self.get("/ticks")
        drained = self.ox.drain()
        self.client.flush()
        self.successResultOf(drained)
        self.assertTrue(response.complete)
        self.assertIsNotNone(response.retry)
        self.assertEqual(len(self.ox.streams), 0)

    def test_streamed_download_backpressure(self) -> None:
        """
        A client that stops reading stops the route's awaited writes; once
        it reads again, every row arrives and the body ends.
        """
        rows = 200_000
        response = self.get("/numbers.csv", query={"rows": rows}, read_limit=4096)
        self.client.advance(10)
        held = response.unread
        self.assertLess(held, 256 * 1024)
        self.client.advance(10)
        self.assertEqual(response.unread, held)
        self.assertFalse(response.complete)
        response.resume_reading()
        self.assertTrue(response.complete)
        lines = response.text().splitlines()
        self.assertEqual(len(lines), rows + 1)
        self.assertEqual(lines[-1], f"{rows},{rows * rows}")

    def test_send_file(self) -> None:
        """``send_file`` from a Klein route: the file, and a single range."""
        whole = self.get("/files/hello.txt")
        self.successResultOf(whole.finished())
        with open(os.path.join(self.example.UPLOADS, "hello.txt"), "rb") as f:
            content = f.read()
        self.assertEqual(whole.body, content)
        part = self.get("/files/hello.txt", headers={"Range": "bytes=0-3"})
        self.successResultOf(part.finished())
        self.assertEqual((part.code, part.body), (206, content[:4]))

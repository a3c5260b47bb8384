"""
Testing the example app with ``oxian_tw.testing``: in memory, on a
deterministic clock. Run with ``python -m twisted.trial examples/tests``.
"""

import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp
from oxian_tw.testing import TestClient

ROUTES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "routes"
)


class ExampleAppTests(SynchronousTestCase):
    def setUp(self):
        # The database path is an app-level dependency (the root's parent),
        # so each test gets its own sqlite file.
        database = os.path.join(os.path.abspath(self.mktemp()), "examples.sqlite3")
        app = OxianApp(
            ROUTES, reactor=Clock(), dependencies={"database_path": database}
        )
        self.client = TestClient(app)

    def test_events(self):
        """SSE: a counter event every second, on the test's own clock."""
        response = self.successResultOf(self.client.get("/events"))
        self.assertEqual(
            response.headers.get("content-type"), "text/event-stream; charset=utf-8"
        )
        self.client.advance(3)
        events = response.events()
        self.assertEqual([e.id for e in events], ["msg-1", "msg-2", "msg-3"])
        self.assertEqual(json.loads(events[-1].data)["count"], 3)

    def test_chat(self):
        """A message sent to a room reaches the room's streams."""
        listener = self.successResultOf(
            self.client.get("/chat/events", query={"room": "t"})
        )
        sent = self.successResultOf(
            self.client.post(
                "/chat/send", json={"room": "t", "username": "ada", "message": "hi"}
            )
        )
        self.assertEqual(sent.code, 200)
        message = listener.events()[-1]
        self.assertEqual(message.event, "message")
        self.assertEqual(json.loads(message.data)["message"], "hi")

    def test_protected_stream(self):
        """No token is a 401; the demo token opens the stream."""
        denied = self.successResultOf(self.client.get("/protected/stream"))
        self.assertEqual(denied.code, 401)
        response = self.successResultOf(
            self.client.get(
                "/protected/stream", headers={"Authorization": "Bearer demo-token"}
            )
        )
        self.assertEqual(response.events()[0].event, "authenticated")
        response.disconnect()

    def test_stock_ticker(self):
        """Prices every ``interval`` seconds; unknown symbols are a 400."""
        self.assertEqual(
            self.successResultOf(self.client.get("/stocks/NOPE/stream")).code, 400
        )
        response = self.successResultOf(
            self.client.get("/stocks/AAPL/stream?interval=2")
        )
        self.client.advance(4)
        prices = [json.loads(e.data) for e in response.events()]
        self.assertEqual(len(prices), 3)
        self.assertEqual({p["symbol"] for p in prices}, {"AAPL"})
        response.disconnect()

"""
Tests for the shipped test kit, ``oxian_tw.testing``.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp
from oxian_tw.testing import TestClient, TestResponse

from .helpers import make_tree

ROUTES = {
    "echo.py": """
        def default(data, ctx):
            return {"data": data, "type": ctx.request.headers.get("content-type")}
    """,
    "later.py": """
        from twisted.internet.task import deferLater

        def GET(data, ctx):
            ctx.response.headers({"content-type": "text/plain"})
            return deferLater(ctx.clock, 2, lambda: "done")
    """,
}


class TestClientTests(SynchronousTestCase):
    """The in-memory client."""

    def setUp(self) -> None:
        self.root = make_tree(self.mktemp(), ROUTES)

    def test_builds_app_on_clock(self) -> None:
        """Given a directory, the client's app runs on the client's clock."""
        clock = Clock()
        client = TestClient(self.root, clock=clock)
        self.assertIs(client.clock, clock)
        self.assertIs(client.app.clock, clock)

    def test_uses_app_clock(self) -> None:
        """Given an app, the client advances the app's clock."""
        clock = Clock()
        client = TestClient(OxianApp(self.root, reactor=clock))
        d = client.get("/later")
        self.assertNoResult(d)
        client.advance(2)
        response = self.successResultOf(d)
        self.assertIsInstance(response, TestResponse)
        self.assertEqual(response.text(), "done")
        self.assertTrue(response.complete)
        self.assertIs(self.successResultOf(response.finished()), response)

    def test_query_merges_with_path_query(self) -> None:
        """``query=`` adds to a query already in the path; lists repeat keys."""
        client = TestClient(self.root)
        response = self.successResultOf(
            client.get("/echo?a=1", query={"b": ["2", "3"]})
        )
        self.assertEqual(response.json()["data"], {"a": "1", "b": ["2", "3"]})

    def test_bodies(self) -> None:
        """``json=``, ``form=`` and ``body=`` send the matching content type."""
        client = TestClient(self.root)
        cases = [
            ({"json": {"x": 1}}, "application/json", {"x": 1}),
            ({"form": {"x": "1"}}, "application/x-www-form-urlencoded", {"x": "1"}),
            (
                {"body": b"raw", "headers": {"Content-Type": "text/plain"}},
                "text/plain",
                {},
            ),
        ]
        for kwargs, content_type, data in cases:
            with self.subTest(kwargs=kwargs):
                response = self.successResultOf(client.post("/echo", **kwargs))
                self.assertEqual(response.json()["type"], content_type)
                self.assertEqual(response.json()["data"], data)

    def test_flush_runs_due_calls(self) -> None:
        """``flush`` runs calls due now, with or without connections."""
        client = TestClient(self.root, clock=Clock())
        ran = []
        client.clock.callLater(0, ran.append, "now")
        client.clock.callLater(1, ran.append, "later")
        client.flush()
        self.assertEqual(ran, ["now"])

    def test_advance_stops_at_each_call(self) -> None:
        """``advance`` runs each timed call at its own time, in order."""
        client = TestClient(self.root, clock=Clock())
        seen = []

        def tick() -> None:
            seen.append(client.clock.seconds())
            if len(seen) < 5:
                client.clock.callLater(1, tick)

        client.clock.callLater(1, tick)
        client.advance(10)
        self.assertEqual(seen, [1, 2, 3, 4, 5])
        self.assertEqual(client.clock.seconds(), 10)

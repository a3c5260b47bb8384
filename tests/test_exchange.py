"""
The request's owner (`oxian_tw._exchange`): its phases and their moves,
and handlers that return async iterators (SPEC §14), in memory.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._phase import TRANSITIONS, Phase

from .helpers import RoutesTestCase

GENERATORS = {
    "state.py": """
        STATE = {"pulled": 0, "closed": False}
    """,
    "tokens.py": """
        from oxian_tw.sse import Event
        from .state import STATE

        async def GET(data, ctx):
            async def tokens():
                try:
                    for n in range(int(data.get("count", 3))):
                        STATE["pulled"] = n + 1
                        if n == 0:
                            yield Event({"n": n}, event="first", id="t0")
                        elif n % 2:
                            yield "plain"
                        else:
                            yield {"n": n, "pad": "x" * int(data.get("pad", 0))}
                        await ctx.sleep(0)
                finally:
                    STATE["closed"] = True
            return tokens()
    """,
    "chunks.py": """
        async def GET(data, ctx):
            async def chunks():
                yield "a,b\\n"
                await ctx.sleep(1)
                yield b"1,2\\n"
            return chunks()
    """,
    "opened.py": """
        async def GET(data, ctx):
            ctx.response.sse(retry=500)
            async def events():
                yield "one"
                yield "two"
            return events()
    """,
    "broken.py": """
        async def GET(data, ctx):
            async def events():
                yield "one"
                raise ValueError("boom")
            return events()
    """,
}


class PhaseTests(SynchronousTestCase):
    def test_transitions(self) -> None:
        """Pending may go anywhere; open only ends; done and gone are final."""
        self.assertEqual(
            TRANSITIONS[Phase.PENDING], {Phase.OPEN, Phase.DONE, Phase.GONE}
        )
        self.assertEqual(TRANSITIONS[Phase.OPEN], {Phase.DONE, Phase.GONE})
        self.assertEqual(TRANSITIONS[Phase.DONE], set())
        self.assertEqual(TRANSITIONS[Phase.GONE], set())

    def test_move_refuses_what_is_not_declared(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest

        from oxian_tw import OxianApp
        from oxian_tw._exchange import Exchange

        from .helpers import make_tree

        app = OxianApp(make_tree(self.mktemp(), {"index.py": "GET = None"}))
        exchange = Exchange(app, DummyRequest([b""]))
        exchange.move(Phase.DONE)
        with self.assertRaises(AssertionError):
            exchange.move(Phase.OPEN)
        self.assertIs(exchange.phase, Phase.DONE)


class AsyncIteratorTests(RoutesTestCase):
    routes = GENERATORS
    config = {"sse-budget": 4096}

    def state(self) -> dict[str, object]:
        state: dict[str, object] = self.module("state.py").STATE
        return state

    def test_events(self) -> None:
        """An event stream was asked for: each item is an event; then the end."""
        response = self.get(
            "/tokens", headers={"Accept": "text/event-stream"}, query={"count": 4}
        )
        self.client.advance(0)
        self.client.flush()
        self.assertEqual(
            response.headers.get("content-type"), "text/event-stream; charset=utf-8"
        )
        events = response.events()
        self.assertEqual(
            [(e.event, e.id, e.data) for e in events],
            [
                ("first", "t0", '{"n":0}'),
                (None, None, "plain"),
                (None, None, '{"n":2,"pad":""}'),
                (None, None, "plain"),
            ],
        )
        self.successResultOf(response.finished())
        self.assertTrue(self.state()["closed"])

    def test_chunks(self) -> None:
        """No event stream asked for: items are chunks of a streamed body."""
        response = self.get("/chunks")
        self.assertEqual(response.text(), "a,b\n")
        self.client.advance(1)
        self.successResultOf(response.finished())
        self.assertEqual(response.text(), "a,b\n1,2\n")

    def test_after_sse_opened(self) -> None:
        """The handler opened ``sse()`` itself: its options hold."""
        response = self.get("/opened")
        self.client.flush()
        self.assertEqual(response.retry, 500)
        self.assertEqual([e.data for e in response.events()], ["one", "two"])
        self.successResultOf(response.finished())

    def test_backpressure_reaches_the_generator(self) -> None:
        """
        A client that stops reading stops the generator: it is not advanced
        while its last event waits; reading again lets it go on.
        """
        response = self.get(
            "/tokens",
            headers={"Accept": "text/event-stream"},
            query={"count": 1000, "pad": 1000},
            read_limit=8192,
        )
        response.stop_reading()
        for _ in range(50):
            self.client.advance(0)
        pulled = self.state()["pulled"]
        assert isinstance(pulled, int)
        self.assertLess(pulled, 150)
        for _ in range(50):
            self.client.advance(0)
        self.assertEqual(self.state()["pulled"], pulled)
        response.resume_reading()
        for _ in range(3000):
            self.client.advance(0)
            if self.state()["closed"]:
                break
        self.assertEqual(self.state()["pulled"], 1000)
        self.assertEqual(len(response.events()), 1000)

    def test_client_leaving_closes_the_generator(self) -> None:
        """The client leaves: the generator's ``finally`` runs, nothing more."""
        response = self.get(
            "/tokens", headers={"Accept": "text/event-stream"}, query={"count": 1000}
        )
        self.client.advance(0)
        response.disconnect()
        self.client.advance(0)
        self.client.advance(0)
        self.assertTrue(self.state()["closed"])
        pulled = self.state()["pulled"]
        self.client.advance(0)
        self.assertEqual(self.state()["pulled"], pulled)

    def test_failure_is_an_error_event(self) -> None:
        """The generator raises after the stream opened: ``event: error``."""
        response = self.get("/broken", headers={"Accept": "text/event-stream"})
        self.client.flush()
        events = response.events()
        self.assertEqual([e.event for e in events], [None, "error"])
        self.assertIn("Internal Server Error", events[1].data)
        self.flushLoggedErrors(ValueError)

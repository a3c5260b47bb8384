"""
Runs (SPEC §15) in memory, on a ``Clock``: a generation apart from its
request, attached to by any number of clients, resumed exactly, stopped,
finished (its end, its snapshot, then 204), failed, interrupted when its
producer's lease lapses, forgotten after the retention.
"""

from __future__ import annotations

import json
from typing import Any

from oxian_tw._runs import CHECK_EVERY, RUNNING

from .helpers import RoutesTestCase

ROUTES = {
    "state.py": """
        STATE = {"calls": 0, "closed": 0}
    """,
    "runs/[key]/index.py": """
        from ...state import STATE

        async def POST(data, ctx):
            count = int(data.get("count", 5))
            fail = data.get("fail") == "yes"

            def source():
                STATE["calls"] += 1
                async def tokens():
                    try:
                        for n in range(count):
                            await ctx.sleep(1)
                            yield f"t{n} "
                        if fail:
                            raise ValueError("the model broke")
                    finally:
                        STATE["closed"] += 1
                return tokens()

            snapshot = (lambda items: "".join(items)) if data.get("snap") else None
            handle = await ctx.runs.start(data["key"], source, snapshot=snapshot)
            return {"key": handle.key, "status": handle.status}

        def GET(data, ctx):
            ctx.response.sse(run=data["key"])

        async def DELETE(data, ctx):
            handle = await ctx.runs.stop(data["key"])
            return None if handle is None else {"status": handle.status}
    """,
}


class RunTests(RoutesTestCase):
    routes = ROUTES
    config = {"runs-lease": 10, "runs-retention": 60}

    def state(self) -> dict[str, int]:
        state: dict[str, int] = self.module("state.py").STATE
        return state

    def start(self, key: str, **query: Any) -> dict[str, Any]:
        response = self.successResultOf(self.client.post(f"/runs/{key}", query=query))
        self.client.flush()
        result: dict[str, Any] = response.json()
        return result

    def attach(self, key: str, last: str | None = None) -> Any:
        headers = {} if last is None else {"Last-Event-ID": last}
        response = self.get(f"/runs/{key}", headers=headers)
        self.client.flush()
        return response

    def texts(self, response: Any) -> list[tuple[str | None, str]]:
        return [(e.event, e.data) for e in response.events()]

    def test_runs_apart_and_attaches(self) -> None:
        """Two clients, one generation; a second start starts nothing."""
        self.assertEqual(self.start("a"), {"key": "a", "status": RUNNING})
        first = self.attach("a")
        self.client.advance(2)
        second = self.attach("a")
        self.assertEqual(self.start("a")["status"], RUNNING)
        self.client.advance(10)
        expected = [(None, f"t{n} ") for n in range(5)] + [("end", '{"status":"done"}')]
        self.assertEqual(self.texts(first), expected)
        self.assertEqual(self.texts(second), expected)
        self.assertEqual(self.state()["calls"], 1)
        self.successResultOf(first.finished())

    def test_resume_mid_run(self) -> None:
        """A client that left comes back with its last id: nothing twice."""
        self.start("b")
        first = self.attach("b")
        self.client.advance(2.5)
        seen = first.events()
        self.assertEqual(len(seen), 2)
        first.disconnect()
        self.client.advance(2)
        again = self.attach("b", last=seen[-1].id)
        self.client.advance(10)
        self.assertEqual(
            [e.data for e in seen + again.events()][:5],
            [f"t{n} " for n in range(5)],
        )
        self.assertEqual(again.events()[-1].event, "end")
        self.assertEqual(self.state()["calls"], 1)

    def test_leaving_does_not_stop_it(self) -> None:
        self.start("c")
        client = self.attach("c")
        client.disconnect()
        self.client.advance(10)
        late = self.attach("c")
        self.assertEqual(len(late.events()), 6)
        self.assertEqual(self.state()["closed"], 1)

    def test_stop(self) -> None:
        """A stop cancels the generator (its finally runs) and ends every client."""
        self.start("d", count=100)
        client = self.attach("d")
        self.client.advance(3)
        stopped = self.successResultOf(self.client.delete("/runs/d"))
        self.client.flush()
        self.assertEqual(stopped.json(), {"status": "stopped"})
        self.assertEqual(self.state()["closed"], 1)
        self.assertEqual(client.events()[-1].event, "end")
        self.assertEqual(json.loads(client.events()[-1].data), {"status": "stopped"})
        self.successResultOf(client.finished())
        self.client.advance(10)
        self.assertEqual(len(client.events()), 4)

    def test_after_the_end_then_204(self) -> None:
        """
        After the end: what the run kept and its end, then the stream
        closes; a reconnect with the end's id gets 204, nothing runs again.
        """
        self.start("e", count=3)
        self.client.advance(5)
        late = self.attach("e")
        self.successResultOf(late.finished())
        events = late.events()
        self.assertEqual([e.data for e in events[:3]], ["t0 ", "t1 ", "t2 "])
        self.assertEqual(events[-1].event, "end")
        reconnect = self.attach("e", last=events[-1].id)
        self.assertEqual(reconnect.code, 204)
        self.assertEqual(self.start("e")["status"], "done")
        self.assertEqual(self.state()["calls"], 1)

    def test_snapshot(self) -> None:
        """A late reader gets the answer in one piece, then the end."""
        self.start("f", count=3, snap="yes")
        self.client.advance(5)
        late = self.attach("f")
        self.assertEqual(
            self.texts(late),
            [("snapshot", "t0 t1 t2 "), ("end", '{"status":"done"}')],
        )

    def test_failed(self) -> None:
        self.start("g", count=1, fail="yes")
        client = self.attach("g")
        self.client.advance(2)
        self.assertEqual(self.texts(client)[-1], ("end", '{"status":"failed"}'))
        self.flushLoggedErrors(ValueError)

    def test_unknown_run(self) -> None:
        response = self.attach("nobody")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.json(), {"error": {"message": "No such run"}})

    def test_interrupted(self) -> None:
        """
        A run whose producer stopped renewing its lease (another process,
        killed): its clients here get ``interrupted`` once the lease lapsed.
        """
        runs = self.app.runs
        channel = runs.channel("h")
        records = runs.hub.backend
        records.claim(channel, "state", json.dumps({"status": RUNNING}), 100)
        records.claim(channel, "lease", "someone-else", 10)
        client = self.attach("h")
        self.client.advance(9)
        self.assertEqual(client.events(), [])
        for _ in range(int(1 / CHECK_EVERY) + 1):
            self.client.advance(CHECK_EVERY)
        self.assertEqual(self.texts(client), [("end", '{"status":"interrupted"}')])

    def test_forgotten_after_retention(self) -> None:
        self.start("i", count=1)
        self.client.advance(2)
        self.client.advance(61)
        self.assertEqual(self.attach("i").code, 404)

    def test_invalid_key_is_400(self) -> None:
        """A key that names no channel (from the URL): 400, never a 500."""
        response = self.attach("a%0Ab")
        self.assertEqual(response.code, 400)
        self.assertIn("Invalid run key", response.json()["error"]["message"])
        stopped = self.successResultOf(self.client.delete("/runs/a%0Ab"))
        self.assertEqual(stopped.code, 400)

    def test_stopped_before_it_began(self) -> None:
        """A stop in the same turn as the start: the source is never called."""
        runs = self.app.runs
        started = runs.start("j", lambda: self.fail("called"))
        stopped = runs.stop("j")
        self.client.flush()
        self.assertEqual(self.successResultOf(started).status, RUNNING)
        self.assertEqual(self.successResultOf(stopped).status, "stopped")
        self.assertEqual(self.state()["calls"], 0)

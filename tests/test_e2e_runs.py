"""
Runs end to end (SPEC §15): two real ``twistd -n oxian`` serving the example
app's assistant, sharing one real ``redis-server``, the built-in
deterministic token generator: a reader cut 20 times at random points and
resumed on alternating processes reads exactly the generator's text; a stop
sent to the other process ends both readers within 1 s; the producing
process killed (SIGKILL) ends its readers elsewhere as ``interrupted``
within the lease + 1 s; a late reader after the end gets the answer once,
then 204.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import RedisServer, TwistdProcess
from .sse_clients import SseClient, pump

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
LEASE = 2.0


def the_answer(prompt: str) -> str:
    """What the example's built-in generator says to ``prompt``."""
    sys.path.insert(0, os.path.join(EXAMPLES, "routes", "assistant"))
    try:
        import _model

        text: str = _model.answer(prompt)
        return text
    finally:
        sys.path.pop(0)


class RunsAcrossProcessesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer(self.mktemp())
        self.addCleanup(self.redis.stop)
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        env = {
            "OXIAN_EXAMPLES_DB": os.path.join(work, "examples.sqlite3"),
            "OXIAN_EXAMPLES_TOKEN_DELAY": "0.03",
        }
        args = (
            "--routes",
            os.path.join(EXAMPLES, "routes"),
            "--hub",
            self.redis.url(2),
            "--runs-lease",
            str(LEASE),
            "--access-log",
            "off",
        )
        self.servers = [TwistdProcess(*args, env=env) for _ in range(2)]
        for server in self.servers:
            self.addCleanup(server.stop)

    def ask(self, server: TwistdProcess, prompt: str) -> str:
        status, _, body = server.request(
            "POST",
            "/assistant/ask",
            json.dumps({"prompt": prompt}).encode(),
            {"Content-Type": "application/json"},
        )
        self.assertEqual(status, 200, body)
        turn: str = json.loads(body)["turn"]
        return turn

    def attach(
        self, server: TwistdProcess, turn: str, last: str | None = None
    ) -> SseClient:
        headers = {} if last is None else {"Last-Event-ID": last}
        return SseClient(
            server.port, f"/assistant/turns/{turn}/events", headers=headers
        )

    def test_cut_twenty_times(self) -> None:
        """Cut at random points, resumed on alternating processes: the exact text."""
        prompt = "tell me about resuming"
        turn = self.ask(self.servers[0], prompt)
        rng = random.Random(30)
        text, last, cuts, ended = "", None, 0, False
        while not ended:
            client = self.attach(self.servers[cuts % 2], turn, last)
            # Read 1 to 4 events, then cut (after 20 cuts: to the end).
            wanted = rng.randint(1, 4) if cuts < 20 else None

            def enough(client: SseClient = client, wanted: int | None = wanted) -> bool:
                if client.eof or any(e.event == "end" for e in client.events):
                    return True
                return wanted is not None and len(client.events) >= wanted

            pump([client], enough, 30)
            for event in client.events[:wanted]:
                if event.event is None:
                    text += event.data
                last = event.id or last
                if event.event == "end":
                    self.assertEqual(json.loads(event.data), {"status": "done"})
                    ended = True
            client.sock.close()
            cuts += 1
        self.assertGreaterEqual(cuts, 20)
        self.assertEqual(text, the_answer(prompt))
        started = [
            json.loads(s.request("GET", "/assistant/stats")[2]) for s in self.servers
        ]
        self.assertEqual(sum(s["started"] for s in started), 1)

    def test_stop_from_the_other_process(self) -> None:
        turn = self.ask(self.servers[0], "a long answer")
        tabs = [self.attach(server, turn) for server in self.servers]
        pump(tabs, lambda: all(len(t.events) >= 3 for t in tabs), 30)
        began = time.monotonic()
        status, _, body = self.servers[1].request(
            "POST", f"/assistant/turns/{turn}/stop"
        )
        self.assertEqual((status, json.loads(body)["status"]), (200, "stopped"))
        pump(
            tabs, lambda: all(any(e.event == "end" for e in t.events) for t in tabs), 5
        )
        self.assertLess(time.monotonic() - began, 1.0)
        for tab in tabs:
            ends = [e for e in tab.events if e.event == "end"]
            self.assertEqual(
                [json.loads(e.data) for e in ends], [{"status": "stopped"}]
            )
            tab.sock.close()

    def test_producer_killed(self) -> None:
        turn = self.ask(self.servers[0], "a long answer")
        reader = self.attach(self.servers[1], turn)
        pump([reader], lambda: len(reader.events) >= 3, 30)
        self.servers[0].process.send_signal(signal.SIGKILL)
        self.servers[0].process.wait(10)
        killed = time.monotonic()
        pump([reader], lambda: any(e.event == "end" for e in reader.events), LEASE + 5)
        self.assertLess(time.monotonic() - killed, LEASE + 1)
        (end,) = [e for e in reader.events if e.event == "end"]
        self.assertEqual(json.loads(end.data), {"status": "interrupted"})
        reader.sock.close()

    def test_late_join_then_204(self) -> None:
        prompt = "short"
        turn = self.ask(self.servers[0], prompt)
        first = self.attach(self.servers[0], turn)
        pump([first], lambda: first.complete, 30)
        late = self.attach(self.servers[1], turn)
        pump([late], lambda: late.complete, 10)
        self.assertEqual(
            [(e.event, e.data) for e in late.events],
            [("snapshot", the_answer(prompt)), ("end", '{"status":"done"}')],
        )
        again = self.attach(self.servers[1], turn, last=late.events[-1].id)
        pump([again], lambda: again.status is not None, 10)
        self.assertEqual((again.status, again.events), (204, []))

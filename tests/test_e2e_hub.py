"""
End-to-end hub across processes (issue #7): two real ``twistd -n oxian``
on their own ports sharing one real ``redis-server``; 100 SSE subscribers
split between them; 1,000 publishes from both sides; a subscriber killed
mid-run and reconnected with its last id; Redis stopped for 3 s.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import RedisServer, TwistdProcess, assert_clean_exit, make_tree
from .sse_clients import SseClient, pump

ROUTES = {
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=["room"])
    """,
    "send.py": """
        async def POST(data, ctx):
            return {"id": await ctx.hub.publish("room", data["n"])}
    """,
}
PUBLISHES = 1000
SUBSCRIBERS = 100


class Publisher(threading.Thread):
    """Publishes ``numbers`` through one server, pausing at ``gate``."""

    def __init__(self, port: int, numbers: range, pause_after: int) -> None:
        super().__init__(daemon=True)
        self.port, self.numbers, self.pause_after = port, numbers, pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        for count, n in enumerate(self.numbers):
            if count == self.pause_after:
                self.paused.set()
                self.resume.wait(60)
            status, _ = post(connection, n)
            if status != 200:
                self.errors.append(f"{n}: {status}")
        connection.close()


def post(connection: http.client.HTTPConnection, n: int) -> tuple[int, bytes]:
    connection.request(
        "POST", "/send", json.dumps({"n": n}), {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    return response.status, response.read()


class TwoProcessesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer(self.mktemp())
        self.addCleanup(self.redis.stop)
        root = make_tree(self.mktemp(), ROUTES)
        args = ("--routes", root, "--hub", self.redis.url(1), "--ping", "1")
        self.servers = [TwistdProcess(*args), TwistdProcess(*args)]
        for server in self.servers:
            self.addCleanup(server.stop)

    def connect(self, n: int, headers: dict[str, str] | None = None) -> SseClient:
        return SseClient(self.servers[n % 2].port, "/events", headers=headers)

    def test_fan_out_across_processes(self) -> None:
        first, second = self.servers
        clients = [self.connect(n) for n in range(SUBSCRIBERS)]
        pump(clients, lambda: all(c.status == 200 for c in clients))
        # Subscribed once a publish made before reaches everyone.
        warm = http.client.HTTPConnection("127.0.0.1", first.port, timeout=30)
        self.assertEqual(post(warm, -1)[0], 200)
        pump(clients, lambda: all(len(c.events) == 1 for c in clients))
        for client in clients:
            client.events.clear()

        half = PUBLISHES // 2
        publishers = [
            Publisher(first.port, range(0, PUBLISHES, 2), half // 2),
            Publisher(second.port, range(1, PUBLISHES, 2), half // 2),
        ]
        for publisher in publishers:
            publisher.start()
        for publisher in publishers:
            self.assertTrue(publisher.paused.wait(60))
        # Half published: every subscriber has it; one is killed.
        victim = clients.pop(0)
        pump(
            [victim, *clients],
            lambda: all(len(c.events) == half for c in [victim, *clients]),
        )
        victim.abort()
        for publisher in publishers:
            publisher.resume.set()
        # It comes back, with its last id, while publishes go on.
        pump(clients, lambda: min(len(c.events) for c in clients) >= half + 100)
        again = self.connect(0, {"Last-Event-ID": victim.events[-1].id or ""})
        clients.append(again)
        for publisher in publishers:
            publisher.join(120)
            self.assertEqual(publisher.errors, [])
        pump(
            clients[:-1], lambda: all(len(c.events) == PUBLISHES for c in clients[:-1])
        )
        pump([again], lambda: len(again.events) >= PUBLISHES - half)

        reference = [e.id for e in clients[0].events]
        self.assertEqual(len(set(reference)), PUBLISHES)
        self.assertEqual(
            sorted(int(e.data) for e in clients[0].events), list(range(PUBLISHES))
        )
        for client in clients[:-1]:
            self.assertEqual([e.id for e in client.events], reference)
        resumed = [e.id for e in victim.events] + [e.id for e in again.events]
        self.assertEqual(resumed, reference)
        self.assertEqual({e.event for e in again.events}, {None})

        # Redis away for 3 s: publishes fail with 503, streams stay up.
        before = [len(c.events) for c in clients]
        self.redis.stop()
        status, body = post(warm, -2)
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body)["error"]["code"], "hub_unavailable")
        deadline = time.monotonic() + 3
        pump(clients, lambda: time.monotonic() > deadline)
        self.assertFalse(any(c.eof for c in clients))
        self.redis.start()
        later = [PUBLISHES, PUBLISHES + 1]
        for server, n in zip(self.servers, later, strict=True):
            server.wait_for("hub: reconnected to Redis", 20)
            connection = http.client.HTTPConnection(
                "127.0.0.1", server.port, timeout=30
            )
            self.assertEqual(post(connection, n)[0], 200)
            connection.close()
        # Restarted without persistence, Redis lost the history: each stream
        # is told (one reset per channel, a new epoch), then gets what follows.
        # A process that reconnects after a publish of the new epoch gets
        # it from history, after the reset.
        pump(
            clients,
            lambda: all(
                len(c.events) == b + 3 for c, b in zip(clients, before, strict=True)
            ),
        )
        for client, b in zip(clients, before, strict=True):
            events = client.events[b:]
            self.assertEqual([e.event for e in events], ["reset", None, None])
            self.assertEqual({int(e.data) for e in events[1:]}, set(later))
        tail = [[e.id for e in c.events[-2:]] for c in clients]
        self.assertEqual(len({tuple(t) for t in tail}), 1)
        for client in clients:
            self.assertFalse(client.eof)
        warm.close()
        for client in clients:
            client.close()
        for server in self.servers:
            assert_clean_exit(self, server)

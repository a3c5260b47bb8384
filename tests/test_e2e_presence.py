"""
End-to-end hub with presence across processes (issue 17): two real
``twistd -n oxian --hub redis://...`` sharing one real ``redis-server``;
100 present subscribers split between them; one process killed with
``SIGKILL`` mid-run and started again while publishes go on. Presence
converges (the killed process's 50 drop out within ``--hub-presence-ttl``,
then come back), and every subscriber's sequence is the publisher's, with
no hole and no repeat across its reconnection.
"""

from __future__ import annotations

import http.client
import json
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import RedisServer, TwistdProcess, assert_clean_exit, make_tree
from .sse_clients import SseClient, pump
from .test_e2e_hub import Publisher, post

ROUTES = {
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=["room"], presence={"user": data["who"]})
    """,
    "send.py": """
        async def POST(data, ctx):
            n = data["n"]
            return {"id": await ctx.hub.publish("room", n, idempotency_key=str(n))}
    """,
    "who.py": """
        async def GET(data, ctx):
            present = await ctx.hub.presence("room")
            return {"users": sorted(info["user"] for info in present.values())}
    """,
}
PUBLISHES = 600
SUBSCRIBERS = 100
TTL = 2


class KillTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer(self.mktemp())
        self.addCleanup(self.redis.stop)
        root = make_tree(self.mktemp(), ROUTES)
        self.args = ("--routes", root, "--hub", self.redis.url(4))
        self.args += ("--hub-presence-ttl", str(TTL))
        self.survivor = self.start()
        self.doomed = self.start()

    def start(self) -> TwistdProcess:
        server = TwistdProcess(*self.args)
        self.addCleanup(server.stop)
        return server

    def present(self, clients: list[SseClient], count: int) -> list[str]:
        """Wait (reading the streams) until ``count`` users are present."""
        users: list[str] = []

        def converged() -> bool:
            nonlocal users
            connection = http.client.HTTPConnection(
                "127.0.0.1", self.survivor.port, timeout=30
            )
            connection.request("GET", "/who")
            users = json.loads(connection.getresponse().read())["users"]
            connection.close()
            return len(users) == count

        pump(clients, converged, timeout=TTL * 10)
        return users

    def test_kill_and_restart(self) -> None:
        servers = (self.survivor, self.doomed)
        clients = [
            SseClient(servers[n % 2].port, f"/events?who=u{n}")
            for n in range(SUBSCRIBERS)
        ]
        pump(clients, lambda: all(c.status == 200 for c in clients))
        users = self.present(clients, SUBSCRIBERS)
        self.assertEqual(sorted(users), sorted(f"u{n}" for n in range(SUBSCRIBERS)))
        warm = http.client.HTTPConnection("127.0.0.1", self.survivor.port, timeout=30)
        self.assertEqual(post(warm, -1)[0], 200)
        pump(clients, lambda: all(len(c.events) == 1 for c in clients))
        for client in clients:
            client.events.clear()

        publisher = Publisher(self.survivor.port, range(PUBLISHES), PUBLISHES // 3)
        publisher.start()
        self.assertTrue(publisher.paused.wait(60))
        pump(clients, lambda: all(len(c.events) == PUBLISHES // 3 for c in clients))
        # The second process dies without a word, mid-run.
        self.doomed.process.kill()
        self.doomed.process.wait(10)
        orphans = clients[1::2]
        pump(orphans, lambda: all(c.eof for c in orphans))
        publisher.resume.set()
        killed_at = time.monotonic()
        users = self.present(clients[::2], SUBSCRIBERS // 2)
        self.assertLess(time.monotonic() - killed_at, TTL * 3)
        self.assertEqual(users, sorted(f"u{n}" for n in range(0, SUBSCRIBERS, 2)))
        # Started again; its clients come back with their last ids.
        restarted = self.start()
        again = [
            SseClient(
                restarted.port,
                f"/events?who=u{n}",
                headers={"Last-Event-ID": orphans[i].events[-1].id or ""},
            )
            for i, n in enumerate(range(1, SUBSCRIBERS, 2))
        ]
        live = clients[::2] + again
        self.present(live, SUBSCRIBERS)
        publisher.join(120)
        self.assertEqual(publisher.errors, [])
        pump(
            clients[::2], lambda: all(len(c.events) == PUBLISHES for c in clients[::2])
        )
        pump(
            again,
            lambda: all(
                len(a.events) + len(o.events) == PUBLISHES
                for a, o in zip(again, orphans, strict=True)
            ),
        )

        reference = [e.id for e in clients[0].events]
        self.assertEqual(len(set(reference)), PUBLISHES)
        for client in clients[::2]:
            self.assertEqual([e.id for e in client.events], reference)
            self.assertEqual(
                [int(e.data) for e in client.events], list(range(PUBLISHES))
            )
        for first, second in zip(orphans, again, strict=True):
            events = first.events + second.events
            self.assertEqual({e.event for e in events}, {None})
            self.assertEqual([e.id for e in events], reference)
        warm.close()
        for client in live:
            client.close()
        assert_clean_exit(self, self.survivor)
        assert_clean_exit(self, restarted)

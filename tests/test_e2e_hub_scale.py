"""
The hub across processes (issue 29, SPEC §11.1), end to end: four real
``twistd -n oxian`` on one real ``redis-server``, 1,000 channels, 250
served by each process (25 streams of 10 channels), and a fifth process
with no stream at all; 20,000 publishes of ~100 bytes from another
process. Each process receives from Redis no more than 1.1 times its
channels' share (before, every process received every event), the idle
one only its own control traffic, and every stream's sequence on each of
its channels is the publisher's.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from oxian_tw.hub import RedisHub
from oxian_tw.hub._address import parse_redis_url

from .helpers import RedisServer, TwistdProcess, assert_clean_exit, make_tree
from .sse_clients import SseClient, pump

ROUTES = {
    "sub.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=data["ch"].split(","))
    """,
}
PROCESSES = 4
CHANNELS = 1000
PER_STREAM = 10
PUBLISHES = 20_000


def received(port: int) -> float:
    """The bytes a process received from Redis (its metrics)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    body = connection.getresponse().read().decode()
    connection.close()
    found = re.search(r"^oxian_hub_received_bytes_total (\S+)$", body, re.M)
    assert found is not None, body
    return float(found.group(1))


class FourProcessesTests(TestCase):
    timeout = 600

    def setUp(self) -> None:
        self.redis = RedisServer(self.mktemp())
        self.addCleanup(self.redis.stop)
        root = make_tree(self.mktemp(), ROUTES)
        args = ("--routes", root, "--hub", self.redis.url(0), "--metrics", "/metrics")
        self.servers = [TwistdProcess(*args) for _ in range(PROCESSES + 1)]
        for server in self.servers:
            self.addCleanup(server.stop)

    async def test_each_process_gets_only_its_channels(self) -> None:
        clients: list[SseClient] = []
        owned: dict[int, list[str]] = {}
        for index in range(PROCESSES):
            names = [f"c{n}" for n in range(index, CHANNELS, PROCESSES)]
            owned[index] = names
            for start in range(0, len(names), PER_STREAM):
                query = ",".join(names[start : start + PER_STREAM])
                clients.append(SseClient(self.servers[index].port, f"/sub?ch={query}"))
        pump(clients, lambda: all(c.status == 200 for c in clients))
        before = [received(s.port) for s in self.servers]

        publisher = RedisHub(parse_redis_url(self.redis.url(0)), lambda: reactor)
        self.addCleanup(publisher.stop)
        # Subscribed once a publish on each channel reaches every stream.
        await gatherResults(
            [publisher.publish(f"c{n}", "warm") for n in range(CHANNELS)]
        )
        pump(clients, lambda: all(len(c.events) == PER_STREAM for c in clients), 60)
        for client in clients:
            client.events.clear()
        pad = "x" * 80
        ids: dict[str, list[str]] = {}
        for start in range(0, PUBLISHES, 1000):
            batch = [
                (f"c{n % CHANNELS}", {"n": n, "p": pad})
                for n in range(start, start + 1000)
            ]
            published = [(c, publisher.publish(c, data)) for c, data in batch]
            for channel, d in published:
                ids.setdefault(channel, []).append(await d)
        per_stream = PUBLISHES // CHANNELS * PER_STREAM
        pump(clients, lambda: all(len(c.events) >= per_stream for c in clients), 120)

        # Every stream: each of its channels in the publisher's order, once.
        for client in clients:
            seen: dict[str, list[Any]] = {}
            for event in client.events:
                n = json.loads(event.data)["n"]
                seen.setdefault(f"c{n % CHANNELS}", []).append(n)
            for channel, numbers in seen.items():
                self.assertEqual(numbers, sorted(numbers))
                self.assertEqual(len(numbers), len(ids[channel]))
            self.assertEqual(len(seen), PER_STREAM)

        grown = [
            received(s.port) - b for s, b in zip(self.servers, before, strict=True)
        ]
        served = grown[:PROCESSES]
        share = sum(served) / PROCESSES
        for index, value in enumerate(served):
            self.assertLessEqual(value, 1.1 * share, (index, served))
        # The idle process: its own replies only (metrics scrapes aside, none).
        self.assertLess(grown[PROCESSES], 0.01 * share, grown)
        for client in clients:
            client.close()
        for server in self.servers:
            assert_clean_exit(self, server)

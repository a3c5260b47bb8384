"""
The hub on a Redis Cluster, end to end (issue 29, SPEC §11.1): two real
``twistd -n oxian --hub redis+cluster://...`` on a real local Cluster
(three primaries, a replica each), 100 channels over all three primaries.
Streams of ten channels each, opened on one process, resume on the other
with their last id, exactly; then a primary is killed (``SIGKILL``) while
events flow, its replica is promoted, and every stream's sequence on each
of its channels goes on without a hole or a repeat, or shows one ``reset``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oxian_tw import HubTimeout, HubUnavailable
from oxian_tw.hub import ClusterHub
from oxian_tw.hub._address import parse_cluster_url
from oxian_tw.hub._cluster import key_slot
from oxian_tw.hub._redis import channel_keys

from .helpers import RedisCluster, TwistdProcess, assert_clean_exit, make_tree
from .sse_clients import SseClient, pump

ROUTES = {
    "sub.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=data["ch"].split(","))
    """,
}
CHANNELS = 100
PER_STREAM = 10


def slot_of(channel: str) -> int:
    return key_slot(channel_keys(channel)["pubsub"].encode())


def read_for(clients: list[SseClient], seconds: float) -> None:
    """Read what has come for ``seconds`` (the server's buffers stay small)."""
    try:
        pump(clients, lambda: False, seconds)
    except AssertionError:
        pass


def numbers(client: SseClient) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Per channel: the numbers a stream got, in order, and its resets."""
    got: dict[str, list[int]] = {}
    resets: dict[str, int] = {}
    for event in client.events:
        data = json.loads(event.data)
        if event.event == "reset":
            resets[data["channel"]] = resets.get(data["channel"], 0) + 1
        else:
            got.setdefault(data["c"], []).append(data["n"])
    return got, resets


class ClusterProcessesTests(TestCase):
    timeout = 600

    def setUp(self) -> None:
        self.cluster = RedisCluster(self.mktemp())
        self.addCleanup(self.cluster.stop)
        root = make_tree(self.mktemp(), ROUTES)
        hub = self.cluster.url(len(self.cluster.ports))
        self.servers = [TwistdProcess("--routes", root, "--hub", hub) for _ in (0, 1)]
        for server in self.servers:
            self.addCleanup(server.stop)
        self.publisher = ClusterHub(parse_cluster_url(hub), lambda: reactor)
        self.addCleanup(self.publisher.stop)
        self.names = [f"k{n}" for n in range(CHANNELS)]
        self.sequence = 0
        #: Per channel: numbers published for sure, and maybe (504).
        self.sure: dict[str, list[int]] = {c: [] for c in self.names}
        self.maybe: dict[str, set[int]] = {c: set() for c in self.names}
        self.failed = 0

    def streams(self, server: int, last: dict[int, str] | None = None) -> list[Any]:
        clients = []
        for index, start in enumerate(range(0, CHANNELS, PER_STREAM)):
            query = ",".join(self.names[start : start + PER_STREAM])
            headers = {"Last-Event-ID": last[index]} if last else None
            clients.append(
                SseClient(
                    self.servers[server].port, f"/sub?ch={query}", headers=headers
                )
            )
        pump(clients, lambda: all(c.status == 200 for c in clients))
        return clients

    async def publish_round(self) -> None:
        sent: list[tuple[str, int, Deferred[str]]] = []
        for channel in self.names:
            self.sequence += 1
            data = {"c": channel, "n": self.sequence}
            sent.append((channel, self.sequence, self.publisher.publish(channel, data)))
        for channel, n, d in sent:
            try:
                await d
                self.sure[channel].append(n)
            except HubTimeout:
                self.maybe[channel].add(n)
                self.failed += 1
            except HubUnavailable:
                self.failed += 1

    async def test_resume_across_processes_and_failover(self) -> None:
        cluster = self.cluster
        self.assertEqual(len({cluster.primary_of(slot_of(c)) for c in self.names}), 3)
        first = self.streams(0)
        for _ in range(5):
            await self.publish_round()
        pump(first, lambda: all(len(c.events) == 5 * PER_STREAM for c in first))
        last = {i: c.events[-1].id for i, c in enumerate(first)}
        for client in first:
            client.close()

        # Resumed on the other process with one id each: exactly the rest.
        before = {c: len(self.sure[c]) for c in self.names}
        for _ in range(3):
            await self.publish_round()
        second = self.streams(1, last)  # type: ignore[arg-type]
        pump(second, lambda: all(len(c.events) == 3 * PER_STREAM for c in second))
        for client in second:
            got, resets = numbers(client)
            self.assertEqual(resets, {})
            for channel, seen in got.items():
                self.assertEqual(seen, self.sure[channel][before[channel] :])

        # A primary killed mid-run; publishing goes on until its replica
        # serves its channels again, then a last round.
        victim = cluster.primary_of(slot_of(self.names[0]))
        on_victim = [c for c in self.names if cluster.primary_of(slot_of(c)) == victim]
        cluster.kill(victim)
        rounds = 0
        while True:
            counts = {c: len(self.sure[c]) for c in on_victim}
            await self.publish_round()
            read_for(second, 0.01)
            rounds += 1
            if self.failed and all(len(self.sure[c]) > counts[c] for c in on_victim):
                break
            self.assertLess(rounds, 3000, "the replica never took over")
            await deferLater(reactor, 0.01)
        for _ in range(3):
            await self.publish_round()
        final = {c: self.sure[c][-1] for c in self.names}

        def caught_up() -> bool:
            return all(
                final[channel] in seen[-1:]
                for client in second
                for channel, seen in numbers(client)[0].items()
            )

        pump(second, caught_up, 60)
        for client in second:
            got, resets = numbers(client)
            self.assertEqual(len(got), PER_STREAM)
            for channel, seen in got.items():
                self.assertEqual(seen, sorted(set(seen)), channel)
                self.assertLessEqual(resets.get(channel, 0), 1, channel)
                if not resets.get(channel):
                    # No reset: every publish confirmed, and only those
                    # (or ones whose answer was lost), in order.
                    expected = self.sure[channel][before[channel] :]
                    extra = set(seen) - set(expected)
                    self.assertLessEqual(extra, self.maybe[channel], channel)
                    self.assertEqual([n for n in seen if n not in extra], expected)
        self.assertTrue(self.failed)
        for client in second:
            client.close()
        for server in self.servers:
            assert_clean_exit(self, server)

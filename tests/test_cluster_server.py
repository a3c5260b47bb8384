"""
The hub on a real local Redis Cluster (3 primaries, 3 replicas, each a
``redis-server --cluster-enabled`` on a free port): every rule of SPEC §11
on channels spread over every primary, sharded pub/sub only for the
channels served, discovery from one node (a replica too), a slot moved
(``MOVED``, ``ASK``, Redis unsubscribing us) and a primary killed
(``SIGKILL``) while events flow: every stream continues with no hole and
no duplicate, or gets ``reset``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oxian_tw import HubTimeout, HubUnavailable
from oxian_tw.hub import ClusterHub, Hub
from oxian_tw.hub._address import parse_cluster_url
from oxian_tw.hub._cluster import key_slot
from oxian_tw.hub._redis import channel_keys

from .helpers import RedisCluster
from .redis_hub import Collector, live, place, until


def slot_of(channel: str) -> int:
    return key_slot(channel_keys(channel)["pubsub"].encode())


def continuous(stream: Collector) -> str | None:
    """
    What is wrong with a one-channel stream's events: a hole, a repeat or
    another epoch not announced by a ``reset`` (``None``: nothing).
    """
    last: tuple[str, int] | None = None
    for event in stream.events:
        if event.event == "reset":
            last = None
            continue
        assert event.id is not None
        epoch, n = place(event.id)
        if last is not None and (epoch, n) != (last[0], last[1] + 1):
            return f"{last} then {(epoch, n)} without a reset"
        last = (epoch, n)
    return None


_shared: list[RedisCluster] = []


def shared_cluster() -> RedisCluster:
    """One Cluster for the tests that do not break it (stopped at exit)."""
    if not _shared:
        import atexit
        import shutil
        import tempfile

        directory = tempfile.mkdtemp(prefix="oxian-cluster-")
        cluster = RedisCluster(directory)
        _shared.append(cluster)
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        atexit.register(cluster.stop)
    return _shared[0]


class ClusterTestCase(TestCase):
    """Tests sharing one Cluster (each its own channel names and hubs)."""

    def setUp(self) -> None:
        self.cluster = shared_cluster()

    def hub(self, url: str | None = None, **options: Any) -> ClusterHub:
        hub = ClusterHub(
            parse_cluster_url(url or self.cluster.url()), lambda: reactor, **options
        )
        self.addCleanup(hub.stop)
        return hub

    async def subscribed(
        self, hub: Hub, *channels: str, last: str | None = None, **kw: Any
    ) -> Collector:
        stream = Collector()
        hub.subscribe(stream, channels, last, **kw)  # type: ignore[arg-type]
        await until(lambda: live(hub, stream))
        return stream

    def shard_channels(self) -> set[str]:
        """The sharded pub/sub channels subscribed to, on every primary."""
        found: set[str] = set()
        for port in self.cluster.alive():
            found |= set(self.cluster.cli(port, "PUBSUB", "SHARDCHANNELS").split())
        return found


class KeySlotTests(ClusterTestCase):
    def test_as_redis_computes_it(self) -> None:
        """`key_slot` against ``CLUSTER KEYSLOT``, hash tags and escapes too."""
        keys = [
            "123456789",
            "foo",
            "{user1000}.following",
            "foo{}{bar}",
            "foo{{bar}}zap",
            *(channel_keys(c)["meta"] for c in ("news", "a{b}c", "100%", "é")),
        ]
        port = self.cluster.ports[0]
        for key in keys:
            expected = int(self.cluster.cli(port, "CLUSTER", "KEYSLOT", key))
            self.assertEqual(key_slot(key.encode()), expected, key)
        self.assertEqual(key_slot(b"123456789"), 0x31C3)


class ClusterFeatureTests(ClusterTestCase):
    async def test_channels_on_every_primary(self) -> None:
        """
        Sixty channels over the three primaries: a stream of each gets its
        events in order with the ids publish returned, whichever hub
        published them.
        """
        channels = [f"spread{i}" for i in range(60)]
        owners = {self.cluster.primary_of(slot_of(c)) for c in channels}
        self.assertEqual(len(owners), 3)
        first, second = self.hub(), self.hub()
        streams = {c: await self.subscribed(second, c) for c in channels}
        ids: dict[str, list[str]] = {c: [] for c in channels}
        for n in range(5):
            for c in channels:
                ids[c].append(await (first if n % 2 else second).publish(c, n))
        await until(lambda: all(len(s.events) == 5 for s in streams.values()))
        for c in channels:
            self.assertEqual(streams[c].ids(), ids[c])
            self.assertEqual([place(i)[1] for i in ids[c]], [1, 2, 3, 4, 5])

    def evalsha_calls(self) -> dict[int, int]:
        """Script calls each live node ran since its stats were reset."""
        import re

        calls = {}
        for port in self.cluster.alive():
            stats = self.cluster.cli(port, "INFO", "commandstats")
            found = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
            calls[port] = int(found.group(1)) if found else 0
        return calls

    async def test_a_turns_publishes_one_call_per_primary(self) -> None:
        """A turn's publishes: one script call per primary, whatever the slots."""
        hub = self.hub()
        channels = [f"batch{i}" for i in range(30)]
        primaries = {self.cluster.primary_of(slot_of(c)) for c in channels}
        self.assertEqual(len(primaries), 3)
        await hub.publish("warm", 0)
        for port in self.cluster.alive():
            self.cluster.cli(port, "CONFIG", "RESETSTAT")
        sent = [hub.publish(c, n) for n in range(2) for c in channels]
        ids = [await d for d in sent]
        calls = self.evalsha_calls()
        self.assertEqual(sum(calls.values()), 3)
        self.assertEqual({p for p, n in calls.items() if n}, primaries)
        self.assertEqual([place(i)[1] for i in ids], [1] * 30 + [2] * 30)

    async def test_a_migrating_slot_splits_the_call(self) -> None:
        """
        A batch holding a channel whose keys were migrated away (its slot
        still migrating) is refused before it wrote anything, then sent one
        call per slot: the others are written once each (n 2, never 3), the
        migrated channel's publish waits out the migration (``ASK``, then
        ``TRYAGAIN``) and lands on the new primary.
        """
        cluster = self.cluster
        hub = self.hub()
        moving = "migrating-batch"
        slot = slot_of(moving)
        source = cluster.primary_of(slot)
        target = next(
            p for p in (cluster.primary_of(s) for s in (0, 8000, 16383)) if p != source
        )
        candidates = (f"mig{i}" for i in range(400))
        others = [
            c
            for c in candidates
            if cluster.primary_of(slot_of(c)) == source and slot_of(c) != slot
        ][:5]
        self.assertEqual(len(others), 5)
        for c in (*others, moving):
            await hub.publish(c, "before")
        source_id, target_id = cluster.node_id(source), cluster.node_id(target)
        cluster.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        cluster.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        keys = cluster.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
        cluster.cli(
            source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys
        )
        sent = [hub.publish(c, "during") for c in (*others, moving)]
        await deferLater(reactor, 0.2)
        for port in cluster.alive():
            if (
                port in (source, target)
                or "master" in cluster.cli(port, "ROLE").split("\n")[0]
            ):
                cluster.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        cluster.wait_until_ok()
        ids = [await d for d in sent]
        self.assertEqual([place(i)[1] for i in ids], [2] * 6)
        meta = channel_keys(moving)["meta"]
        self.assertEqual(cluster.cli(target, "EXISTS", meta).strip(), "1")

    async def test_one_id_resumes_channels_on_several_nodes(self) -> None:
        """A multi-channel id, resumed on another process, misses nothing."""
        channels = [f"multi{i}" for i in range(6)]
        self.assertGreater(
            len({self.cluster.primary_of(slot_of(c)) for c in channels}), 1
        )
        first, second = self.hub(), self.hub()
        stream = await self.subscribed(first, *channels)
        for c in channels:
            await first.publish(c, c + "-1")
        await until(lambda: len(stream.events) == 6)
        last = stream.ids()[-1]
        assert last is not None
        stream.end()
        for c in channels:
            await second.publish(c, c + "-2")
        again = await self.subscribed(second, *channels, last=last)
        await until(lambda: len(again.events) == 6)
        self.assertEqual(sorted(again.data()), sorted(c + "-2" for c in channels))

    async def test_history_earliest_idempotency(self) -> None:
        hub = self.hub()
        first = await hub.publish("kept", 1, idempotency_key="k1")
        for n in (2, 3, 4):
            await hub.publish("kept", n)
        self.assertEqual(await hub.publish("kept", 1, idempotency_key="k1"), first)
        tail = await self.subscribed(self.hub(), "kept", history=2)
        self.assertEqual(tail.data(), [3, 4])
        every = await self.subscribed(self.hub(), "kept", last="earliest")
        self.assertEqual(every.data(), [1, 2, 3, 4])

    async def test_presence_across_processes(self) -> None:
        a, b = self.hub(), self.hub()
        await self.subscribed(a, "lobby", presence={"name": "ann"})
        await self.subscribed(b, "lobby", presence={"name": "bob"})
        for _ in range(500):
            if await b.presence_count("lobby") == 2:
                break
            await deferLater(reactor, 0.01)
        present = await a.presence("lobby")
        self.assertEqual(sorted(p["name"] for p in present.values()), ["ann", "bob"])
        self.assertEqual(await b.presence_count("lobby"), 2)

    async def test_only_the_channels_served(self) -> None:
        """SSUBSCRIBE on the slot's primary while a stream here needs it."""
        hub = self.hub()
        stream = await self.subscribed(hub, "served")
        self.assertIn("oxian:{served}", self.shard_channels())
        self.assertNotIn("oxian:{unserved}", self.shard_channels())
        stream.end()
        await until(lambda: "oxian:{served}" not in self.shard_channels())

    async def test_discovered_from_a_replica(self) -> None:
        """One node given, a replica: the primaries are found from it."""
        primaries = {self.cluster.primary_of(s) for s in (0, 8000, 16383)}
        replica = next(p for p in self.cluster.ports if p not in primaries)
        hub = self.hub(f"redis+cluster://127.0.0.1:{replica}")
        stream = await self.subscribed(hub, "found")
        published = await hub.publish("found", "x")
        await until(lambda: len(stream.events) == 1)
        self.assertEqual(stream.ids(), [published])

    async def test_unreachable_cluster_is_503(self) -> None:
        hub = self.hub("redis+cluster://127.0.0.1:1")
        with self.assertRaises(HubUnavailable):
            await hub.publish("nowhere", 1)

    async def test_slot_moved_while_streaming(self) -> None:
        """
        A channel's slot moves to another primary while a stream follows it
        (keys migrated, ``ASK`` during the move, ``MOVED`` after, and Redis
        unsubscribing the old node's followers): the stream goes on without
        a hole or a repeat, and publishing goes on.
        """
        cluster = self.cluster
        channel = "moving"
        slot = slot_of(channel)
        source = cluster.primary_of(slot)
        target = next(
            p for p in (cluster.primary_of(s) for s in (0, 8000, 16383)) if p != source
        )
        publisher, follower = self.hub(), self.hub()
        stream = await self.subscribed(follower, channel)
        for n in range(5):
            await publisher.publish(channel, n)
        source_id, target_id = cluster.node_id(source), cluster.node_id(target)
        cluster.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        cluster.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        keys = cluster.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
        cluster.cli(
            source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys
        )
        # Mid-migration: the keys are on the target, the slot not yet (ASK,
        # and TRYAGAIN for a script whose idempotency key exists nowhere).
        during = publisher.publish(channel, 5)
        await deferLater(reactor, 0.2)
        for port in cluster.alive():
            if (
                port in (source, target)
                or "master" in cluster.cli(port, "ROLE").split("\n")[0]
            ):
                cluster.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        cluster.wait_until_ok()
        await during
        for n in range(6, 10):
            await publisher.publish(channel, n)
        await until(lambda: len(stream.data()) >= 10)
        self.assertEqual(stream.data(), list(range(10)))
        self.assertIsNone(continuous(stream))
        self.assertEqual(cluster.primary_of(slot), target)


class FailoverTests(TestCase):
    """A primary killed while events flow (a Cluster of its own)."""

    def setUp(self) -> None:
        self.cluster = RedisCluster(self.mktemp())
        self.addCleanup(self.cluster.stop)

    async def test_primary_killed(self) -> None:
        """
        ``SIGKILL`` the primary of a third of the channels while a publisher
        publishes to all of them: publishes on it fail (503 or 504) until
        its replica takes over; then every stream has each of its channel's
        events once, in order, or a ``reset`` where it cannot tell.
        """
        cluster = self.cluster
        channels = [f"f{i}" for i in range(30)]
        victim = cluster.primary_of(slot_of(channels[0]))
        on_victim = [c for c in channels if cluster.primary_of(slot_of(c)) == victim]
        publisher = ClusterHub(parse_cluster_url(cluster.url(6)), lambda: reactor)
        follower = ClusterHub(parse_cluster_url(cluster.url(6)), lambda: reactor)
        self.addCleanup(publisher.stop)
        self.addCleanup(follower.stop)
        streams: dict[str, Collector] = {}
        for c in channels:
            streams[c] = Collector()
            follower.subscribe(streams[c], [c])  # type: ignore[arg-type]
        await until(lambda: all(live(follower, s) for s in streams.values()))
        failed: list[Exception] = []
        published: dict[str, list[Any]] = {c: [] for c in channels}
        sequence = [0]

        async def publish_round() -> None:
            sent: list[Deferred[str]] = []
            for c in channels:
                sequence[0] += 1
                sent.append(publisher.publish(c, sequence[0]))
            for c, d in zip(channels, sent, strict=True):
                try:
                    await d
                    published[c].append(True)
                except (HubUnavailable, HubTimeout) as e:
                    failed.append(e)

        for _ in range(5):
            await publish_round()
        cluster.kill(victim)
        # Until the replica took over and every channel published again.
        rounds = 0
        while True:
            before = {c: len(published[c]) for c in on_victim}
            await publish_round()
            rounds += 1
            if all(len(published[c]) > before[c] for c in on_victim) and failed:
                break
            self.assertLess(rounds, 2000, "the replica never took over")
            await deferLater(reactor, 0.01)
        for _ in range(5):
            await publish_round()
        # Every channel's stream goes on: its last publish arrives.
        last = {c: await publisher.publish(c, "last") for c in channels}
        await until(lambda: all(last[c] in s.ids() for c, s in streams.items()), 30)
        for c, stream in streams.items():
            self.assertIsNone(continuous(stream), c)
        self.assertTrue(failed)

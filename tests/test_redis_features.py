"""
SPEC §11's newer rules in the Redis backend, against a real
``redis-server``: history on subscribe, ``earliest``, idempotent publish
across processes, presence across processes and after a process is killed,
epochs (``FLUSHDB``, a restart without persistence, a lost channel) and
gaps in the live pub/sub sequence. Two hubs on one Redis stand for two
processes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from oxian_tw.hub import RedisHub
from oxian_tw.hub import _redis as _redishub

from .redis_hub import Collector, RedisHubTestCase, place, until


class RedisFeatureTestCase(RedisHubTestCase):
    db = 2


class HistoryTests(RedisFeatureTestCase):
    async def test_keys_expire_after_the_history_age(self) -> None:
        """
        A channel's history expires 1 to 1.5 times the history age after
        its last publish (plus a second), its record twice that.
        """
        hub = self.hub(history_age=10)
        for n in range(3):
            await hub.publish("aging", n)
        history = int(self.cli("PTTL", "oxian:{aging}:s"))
        record = int(self.cli("PTTL", "oxian:{aging}:m"))
        self.assertTrue(10_000 < history <= 16_000, history)
        self.assertTrue(20_000 < record <= 32_000, record)

    async def test_last_n(self) -> None:
        hub = self.hub(history=10)
        for n in range(5):
            await hub.publish("news", n)
        self.assertEqual(
            (await self.subscribed(hub, "news", history=3)).data(), [2, 3, 4]
        )
        self.assertEqual((await self.subscribed(hub, "news", history=1)).data(), [4])
        self.assertEqual(
            (await self.subscribed(hub, "news", history=9)).data(), list(range(5))
        )
        self.assertEqual((await self.subscribed(hub, "news")).data(), [])

    async def test_several_channels_each_in_its_order(self) -> None:
        hub = self.hub()
        for channel, n in (
            ("news", 0),
            ("sport", 1),
            ("news", 2),
            ("news", 3),
            ("sport", 4),
        ):
            await hub.publish(channel, n)
        stream = await self.subscribed(hub, "news", "sport", history=2)
        self.assertEqual(stream.data(), [2, 3, 1, 4])

    async def test_racing_publish(self) -> None:
        """
        A publish from another process while the history is fetched: each
        event once, in publication order, whichever comes first.
        """
        hub, other = self.hub(), self.hub()
        for n in range(3):
            await hub.publish("news", n)
        await self.subscribed(hub, "warm")
        stream = Collector()
        hub.subscribe(stream, ["news"], None, history=2)  # type: ignore[arg-type]
        racing = other.publish("news", "racing")
        await racing
        await hub.publish("news", "after")
        await until(lambda: len(stream.events) >= 4)
        await deferLater(reactor, 0.1)
        self.assertEqual(stream.data(), [1, 2, "racing", "after"])
        self.assertEqual(len(set(stream.ids())), 4)
        self.assertEqual(len(set(stream.ids())), 4)

    async def test_earliest(self) -> None:
        hub = self.hub(history=3)
        for n in range(5):
            await hub.publish("news", n)
        await hub.publish("sport", "s")
        stream = await self.subscribed(hub, "news", "sport", last="earliest")
        self.assertEqual(stream.data(), [2, 3, 4, "s"])


class IdempotencyTests(RedisFeatureTestCase):
    async def test_same_key_across_processes(self) -> None:
        first, second = self.hub(), self.hub()
        stream = await self.subscribed(first, "news")
        one = await first.publish("news", "a", idempotency_key="k")
        two = await second.publish("news", "a", idempotency_key="k")
        self.assertEqual(one, two)
        other = await second.publish("sport", "a", idempotency_key="k")
        self.assertNotEqual(other, one)
        await first.publish("news", "b")
        await until(lambda: len(stream.events) == 2)
        self.assertEqual(stream.data(), ["a", "b"])
        self.assertEqual(second.stats().duplicates, 1)

    async def test_window(self) -> None:
        self.patch(_redishub, "IDEMPOTENCY_WINDOW", 0.3)
        hub = self.hub()
        first = await hub.publish("news", "a", idempotency_key="k")
        self.assertEqual(await hub.publish("news", "a", idempotency_key="k"), first)
        await deferLater(reactor, 0.4)
        self.assertNotEqual(await hub.publish("news", "a", idempotency_key="k"), first)


class PresenceTests(RedisFeatureTestCase):
    async def test_across_processes(self) -> None:
        first, second = self.hub(), self.hub()
        watcher = await self.subscribed(second, "room")
        alice = await self.subscribed(
            first, "room", presence={"user": "alice"}, presence_events=True
        )
        bob = await self.subscribed(
            second, "room", presence={"user": "bob"}, presence_events=True
        )
        await until(lambda: len(watcher.events) == 2)
        for hub in (first, second):
            present = await hub.presence("room")
            self.assertEqual(
                sorted(i["user"] for i in present.values()), ["alice", "bob"]
            )
        alice.end()
        await until(lambda: len(watcher.events) == 3)
        self.assertEqual(
            [
                (e.event, d["info"]["user"])
                for e, d in zip(watcher.events, watcher.data(), strict=True)
            ],
            [("join", "alice"), ("join", "bob"), ("leave", "alice")],
        )
        self.assertEqual(
            list((await first.presence("room")).values()), [{"user": "bob"}]
        )
        self.assertEqual(await first.presence_count("room"), 1)
        bob.end()
        await until(lambda: len(watcher.events) == 4)
        self.assertEqual(await second.presence("room"), {})
        self.assertEqual(await second.presence_count("room"), 0)

    async def test_killed_process_drops_out_within_the_ttl(self) -> None:
        """
        A process that stops renewing (killed: it says no goodbye) drops out
        after the TTL, and its leave event is published by the others.
        """
        doomed, survivor = self.hub(presence_ttl=0.6), self.hub(presence_ttl=0.6)
        watcher = await self.subscribed(
            survivor, "room", presence={"user": "s"}, presence_events=True
        )
        await self.subscribed(
            doomed, "room", presence={"user": "d"}, presence_events=True
        )
        await until(lambda: len(watcher.events) == 2)
        self.assertEqual(len(await survivor.presence("room")), 2)
        # The process vanishes: no renewal, no leave of its own.
        await doomed.stop()
        await deferLater(reactor, 0.3)
        self.assertEqual(len(await survivor.presence("room")), 2)
        await until(lambda: len(watcher.events) == 3, 5)
        self.assertEqual(watcher.events[-1].event, "leave")
        self.assertEqual(watcher.data()[-1]["info"], {"user": "d"})
        self.assertEqual(
            list((await survivor.presence("room")).values()), [{"user": "s"}]
        )


class EpochTests(RedisFeatureTestCase):
    async def lost_between(self, lose: Any) -> Collector:
        """The issue's scenario: read 1-3, leave; 4-5; data lost; 6-8; come back."""
        hub = self.hub()
        reader = await self.subscribed(hub, "news")
        for n in range(1, 4):
            await hub.publish("news", n)
        await until(lambda: len(reader.events) == 3)
        last = reader.ids()[-1]
        reader.end()
        for n in (4, 5):
            await hub.publish("news", n)
        await lose(hub)
        for n in (6, 7, 8):
            await hub.publish("news", n)
        again = await self.subscribed(hub, "news", last=last)
        await deferLater(reactor, 0.1)
        return again

    async def test_flushdb(self) -> None:
        async def flush(hub: RedisHub) -> None:
            self.assertEqual(self.cli("FLUSHDB").strip(), "OK")

        again = await self.lost_between(flush)
        self.assertEqual([e.event for e in again.events], ["reset"])

    async def test_restart_without_persistence(self) -> None:
        async def restart(hub: RedisHub) -> None:
            connection = hub._backend.nodes._connection  # type: ignore[attr-defined]
            assert connection is not None
            old = connection.protocol
            self.redis.stop()
            self.redis.start()
            await until(lambda: connection.protocol not in (None, old), 15)

        again = await self.lost_between(restart)
        self.assertEqual([e.event for e in again.events], ["reset"])

    async def test_lost_channel(self) -> None:
        """A channel's stream evicted (or deleted) by Redis alone: a reset too."""

        async def evict(hub: RedisHub) -> None:
            self.assertEqual(self.cli("DEL", "oxian:{news}:s").strip(), "1")

        again = await self.lost_between(evict)
        self.assertEqual([e.event for e in again.events], ["reset"])

    async def test_nothing_lost_resumes(self) -> None:
        async def keep(hub: RedisHub) -> None:
            pass

        again = await self.lost_between(keep)
        self.assertEqual(again.data(), [4, 5, 6, 7, 8])


#: What a replica that missed the last two publishes holds (run on a
#: channel at 5): entries 4 and 5 gone, the record back at 3.
REWIND = """
redis.call('XDEL', KEYS[2], '4-0', '5-0')
redis.call('XSETID', KEYS[2], '3-0')
local e = redis.call('XRANGE', KEYS[2], '3-0', '3-0')[1]
redis.call('HSET', KEYS[1], 'n', 3, 'c', e[2][6])
"""


class FailoverLossTests(RedisFeatureTestCase):
    """
    A failover to a replica that lacked acknowledged events (replication is
    asynchronous): stand-in, the channel rewound to 3 while the follower's
    connection is down, as a killed primary's replica would hold it.
    """

    async def failed_over(self, republished: list[Any]) -> tuple[Any, ...]:
        publisher, follower = self.hub(), self.hub()
        stream = await self.subscribed(follower, "news")
        ids = [await publisher.publish("news", n) for n in range(1, 6)]
        await until(lambda: len(stream.events) == 5)
        connection = follower._backend.nodes._connection  # type: ignore[attr-defined]
        await connection.stop()
        self.cli("EVAL", REWIND, "2", "oxian:{news}:m", "oxian:{news}:s")
        for data in republished:
            await publisher.publish("news", data)
        connection.start()
        await until(lambda: "reset" in [e.event for e in stream.events])
        after = await publisher.publish("news", "after")
        await until(lambda: after in stream.ids())
        return publisher, stream, ids, after

    async def test_other_events_numbered_in_their_place(self) -> None:
        """
        4 and 5 were lost, two others got their numbers: the follower's
        check of its last event tells; one reset, then what follows; an id
        given before the change resumes to a reset, not past the new 4, 5.
        """
        publisher, stream, ids, after = await self.failed_over(["4b", "5b"])
        self.assertEqual([e.event for e in stream.events], [None] * 5 + ["reset", None])
        self.assertEqual(stream.data()[-1], "after")
        self.assertNotEqual(place(after)[0], place(ids[0])[0])
        again = await self.subscribed(publisher, "news", last=ids[-1])
        await deferLater(reactor, 0.1)
        self.assertEqual([e.event for e in again.events], ["reset"])

    async def test_channel_went_back(self) -> None:
        """Nothing published meanwhile: the channel is behind the follower."""
        publisher, stream, ids, after = await self.failed_over([])
        self.assertEqual([e.event for e in stream.events], [None] * 5 + ["reset", None])
        self.assertNotEqual(place(after)[0], place(ids[0])[0])


class GapTests(RedisFeatureTestCase):
    def lossy(self, mangle: Any) -> RedisHub:
        """A hub whose pub/sub messages pass through ``mangle(push, deliver)``."""
        hub = self.hub()
        backend: Any = hub._backend
        pushed = backend._pushed
        backend._pushed = lambda push: mangle(push, pushed)
        return hub

    async def test_suppressed_message_caught_up(self) -> None:
        """
        A pub/sub message lost on one process's connection (at-most-once):
        the next one reveals the hole, its streams are caught up from
        history first, nothing is missing or repeated.
        """

        def dropping(push: Any, deliver: Any) -> None:
            if b"data: 2\n" not in push[-1]:
                deliver(push)

        publisher, lossy = self.hub(), self.lossy(dropping)
        stream = await self.subscribed(lossy, "news")
        ids = [await publisher.publish("news", n) for n in range(6)]
        await until(lambda: len(stream.events) == 6)
        await deferLater(reactor, 0.1)
        self.assertEqual(stream.ids(), ids)
        self.assertEqual(stream.data(), list(range(6)))
        self.assertEqual(lossy.stats().gaps, 1)

    async def test_reordered_messages(self) -> None:
        """Two messages swapped on the way: in order, each once."""
        held: list[Any] = []

        def swapping(push: Any, deliver: Any) -> None:
            if b"data: 1\n" in push[-1]:
                held.append(push)
                return
            deliver(push)
            if held and b"data: 2\n" in push[-1]:
                deliver(held.pop())

        publisher, lossy = self.hub(), self.lossy(swapping)
        stream = await self.subscribed(lossy, "news")
        ids = [await publisher.publish("news", n) for n in range(4)]
        await until(lambda: len(stream.events) == 4)
        await deferLater(reactor, 0.1)
        self.assertEqual(stream.ids(), ids)
        self.assertGreaterEqual(lossy.stats().gaps, 1)

"""
The Redis hub against a real ``redis-server`` (started on a free port in a
temporary directory): its Lua scripts keep ids, history, eviction and
replay boundaries as SPEC §11 says, two hubs (as two processes would) see
one order, and a Redis restart is survived.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oxian_tw import HubTimeout, HubUnavailable
from oxian_tw.hub import _redis as _redishub
from oxian_tw.hub._client import parse_redis_url
from oxian_tw.hub._redis import RedisHub
from oxian_tw.sse import Decoder, Event

from .helpers import RedisServer


class Collector:
    """Stands in for an SSE stream: decodes what the hub delivers."""

    closed = False
    request_id = "test"

    def __init__(self) -> None:
        self._decoder = Decoder()
        self._ends: list[Any] = []
        self.events: list[Event] = []

    def _deliver(self, wire: bytes) -> bool:
        self.events.extend(e for e in self._decoder.feed(wire) if isinstance(e, Event))
        return True

    def _cut(self, reason: str = "shutdown") -> None:
        self.end()

    def _on_end(self, callback: Any) -> None:
        self._ends.append(callback)

    def end(self) -> None:
        self.closed = True
        for callback in self._ends:
            callback(self)

    def ids(self) -> list[str | None]:
        return [e.id for e in self.events]

    def data(self) -> list[Any]:
        """Each event's data: JSON decoded, else as sent."""
        return [_decoded(e.data) for e in self.events]


def _decoded(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def place(event_id: str) -> tuple[str, int, int]:
    """An id's (epoch, ms, n): ids of one epoch sort by (ms, n)."""
    epoch, ms, n = event_id.split("-")
    return epoch, int(ms), int(n)


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Let the reactor run until ``condition()`` holds."""
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"still waiting after {timeout} s")
        await deferLater(reactor, 0.01)
        waited += 0.01


class RedisHubServerTests(TestCase):
    def setUp(self) -> None:
        self.redis = RedisServer(self.mktemp())
        self.addCleanup(self.redis.stop)

    def hub(self, **limits: Any) -> RedisHub:
        hub = RedisHub(parse_redis_url(self.redis.url(3)), lambda: reactor, **limits)
        self.addCleanup(hub.stop)
        return hub

    async def subscribed(
        self,
        hub: RedisHub,
        *channels: str,
        last: str | None = None,
        settle: bool = True,
    ) -> Collector:
        stream = Collector()
        hub.subscribe(stream, channels, last)  # type: ignore[arg-type]
        if settle:
            await until(lambda: not hub._catching_up and hub._seen is not None)
        return stream

    async def test_two_hubs_one_order(self) -> None:
        """Publishes on two hubs reach subscribers of both, once each, in one order."""
        first, second = self.hub(), self.hub()
        streams = [await self.subscribed(h, "room") for h in (first, second, first)]
        published: list[Deferred[str]] = []
        for n in range(50):
            published.append((first if n % 2 else second).publish("room", {"n": n}))
        ids = [await d for d in published]
        await until(lambda: all(len(s.events) == 50 for s in streams))
        # Two connections race to Redis: its order is the order, for all.
        in_order = sorted(ids, key=place)
        for stream in streams:
            self.assertEqual(stream.ids(), in_order)
            self.assertEqual(sorted(d["n"] for d in stream.data()), list(range(50)))
        self.assertEqual(len(set(ids)), 50)

    async def test_ids_increase_across_channels(self) -> None:
        hub = self.hub()
        ids = [await hub.publish(c, "x") for c in ("a", "b", "a", "c", "b")]
        orders = [place(i) for i in ids]
        self.assertEqual(orders, sorted(orders))
        self.assertEqual(len(set(orders)), 5)

    async def test_replay_boundaries(self) -> None:
        """First, middle and last id resume exactly; later ids are unknown."""
        hub = self.hub(history=10)
        ids = [await hub.publish("news", n) for n in range(5)]
        for position, expected in ((0, [1, 2, 3, 4]), (2, [3, 4]), (4, [])):
            stream = await self.subscribed(hub, "news", last=ids[position])
            self.assertEqual(stream.data(), expected)
        epoch, ms, n = place(ids[-1])
        for unknown in (
            f"{epoch}-{ms}-{n + 1}",
            f"{epoch}-{ms + 1}-0",
            f"{epoch}0-{ms}-{n}",
            "junk",
        ):
            stream = await self.subscribed(hub, "news", last=unknown)
            self.assertEqual([e.event for e in stream.events], ["reset"], unknown)
            self.assertEqual(
                json.loads(stream.events[0].data),
                {"channel": "news", "last_event_id": unknown},
            )

    async def test_eviction_by_count_and_bytes(self) -> None:
        hub = self.hub(history=3)
        ids = [await hub.publish("news", n) for n in range(5)]
        stream = await self.subscribed(hub, "news", last=ids[1])
        self.assertEqual(stream.data(), [2, 3, 4])
        stream = await self.subscribed(hub, "news", last=ids[0])
        self.assertEqual([e.event for e in stream.events], ["reset"])
        # Bytes: each event's lines are 'data: "xxxxxxxxxx"\n' (19 bytes).
        small = self.hub(history_bytes=40)
        ids = [await small.publish("sport", "x" * 10) for n in range(4)]
        stream = await self.subscribed(small, "sport", last=ids[1])
        self.assertEqual(len(stream.events), 2)
        stream = await self.subscribed(small, "sport", last=ids[0])
        self.assertEqual([e.event for e in stream.events], ["reset"])

    async def test_eviction_by_age(self) -> None:
        """Aged events are not replayed even before a publish trims them."""
        hub = self.hub(history_age=0.3)
        ids = [await hub.publish("news", n) for n in range(2)]
        stream = await self.subscribed(hub, "news", last=ids[0])
        self.assertEqual(stream.data(), [1])
        await deferLater(reactor, 0.4)
        stream = await self.subscribed(hub, "news", last=ids[0])
        self.assertEqual([e.event for e in stream.events], ["reset"])
        # A recent id on a channel that expired or never existed: nothing lost.
        recent = await hub.publish("other", "x")
        stream = await self.subscribed(hub, "quiet", last=recent)
        self.assertEqual(stream.events, [])

    async def test_new_channel_and_old_id(self) -> None:
        """An id older than the history age may have missed a channel's events."""
        hub = self.hub(history_age=0.3)
        old = await hub.publish("news", "x")
        await deferLater(reactor, 0.4)
        stream = await self.subscribed(hub, "fresh", last=old)
        self.assertEqual([e.event for e in stream.events], ["reset"])

    async def test_paused_redis_publish_may_have_happened(self) -> None:
        """
        Redis frozen while a publish is sent: after the timeout the publish
        fails with 504 ``hub_timeout`` (not 503 "nothing published"),
        and once Redis resumes the event is delivered, as the error said
        it might be.
        """
        self.patch(_redishub, "PUBLISH_TIMEOUT", 0.5)
        publisher, subscriber = self.hub(), self.hub()
        stream = await self.subscribed(subscriber, "news")
        await publisher.publish("news", 1)
        await until(lambda: len(stream.events) == 1)
        self.redis.pause()
        try:
            with self.assertRaises(HubTimeout) as caught:
                await publisher.publish("news", 2)
        finally:
            self.redis.resume()
        self.assertEqual(caught.exception.status, 504)
        await until(lambda: len(stream.events) == 2)
        self.assertEqual(stream.data(), [1, 2])

    async def test_redis_restart(self) -> None:
        """
        Redis stopped: publishes fail with 503, streams stay. Restarted
        without persistence: the hub reconnects, its streams get a reset
        (history was lost with Redis: a new epoch), then later publishes.
        """
        publisher, subscriber = self.hub(), self.hub()
        stream = await self.subscribed(subscriber, "news")
        first = await publisher.publish("news", 1)
        await until(lambda: len(stream.events) == 1)
        self.redis.stop()
        await until(lambda: publisher._connection.protocol is None)  # type: ignore[union-attr]
        with self.assertRaises(HubUnavailable):
            await publisher.publish("news", 2)
        await deferLater(reactor, 1.0)
        self.redis.start()
        await until(lambda: publisher._connection.protocol is not None, 15)  # type: ignore[union-attr]
        await until(lambda: subscriber._connection.protocol is not None, 15)  # type: ignore[union-attr]
        later = await publisher.publish("news", 3)
        await until(lambda: len(stream.events) == 3)
        self.assertEqual(stream.ids(), [first, None, later])
        self.assertEqual(stream.events[1].event, "reset")
        self.assertNotEqual(place(first)[0], place(later)[0])
        self.assertFalse(stream.closed)

"""
The Redis hub against a real ``redis-server`` (started on a free port in a
temporary directory): its scripts keep each channel's epoch, sequence,
history, eviction and replay boundaries as SPEC §11 and §11.1 say; two
hubs (as two processes would) see each channel in one order; a process
subscribes only to the channels its streams follow; a Redis pause and
restart are survived.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oxian_tw import HubTimeout, HubUnavailable
from oxian_tw.hub import RedisHub, _client
from oxian_tw.hub._address import parse_redis_url

from .helpers import RedisServer, make_certificate
from .redis_hub import Collector, RedisHubTestCase, live, place, until


class RedisHubServerTests(RedisHubTestCase):
    async def test_two_hubs_one_order_per_channel(self) -> None:
        """
        Publishes on two hubs reach subscribers of both, once each, each
        channel in Redis's one order; the id line comes first on the wire.
        """
        first, second = self.hub(), self.hub()
        streams = [await self.subscribed(h, "room") for h in (first, second, first)]
        published: list[Deferred[str]] = []
        for n in range(50):
            published.append((first if n % 2 else second).publish("room", {"n": n}))
        ids = [await d for d in published]
        await until(lambda: all(len(s.events) == 50 for s in streams))
        in_order = sorted(ids, key=place)
        self.assertEqual([place(i)[1] for i in in_order], list(range(1, 51)))
        for stream in streams:
            self.assertEqual(stream.ids(), in_order)
            self.assertEqual(sorted(d["n"] for d in stream.data()), list(range(50)))
            self.assertTrue(all(w.startswith(b"id: ") for w in stream.wires))

    async def test_a_turns_publishes_in_one_call(self) -> None:
        """
        Publishes made in one reactor turn go to Redis as one script call
        (at most `BATCH_MAX` each), in order, each with its own id; the
        same idempotency key twice in a batch is one event.
        """
        hub = self.hub()
        await hub.publish("warm", 0)
        self.cli("CONFIG", "RESETSTAT")
        sent = [hub.publish(f"c{n % 3}", n) for n in range(250)]
        twice = [hub.publish("c0", "k", idempotency_key="k") for _ in range(2)]
        ids = [await d for d in sent]
        first, second = [await d for d in twice]
        stats = self.cli("INFO", "commandstats")
        calls = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
        assert calls is not None
        self.assertEqual(int(calls.group(1)), 3)
        for channel in range(3):
            numbers = [place(i)[1] for i in ids[channel::3]]
            self.assertEqual(numbers, list(range(1, len(numbers) + 1)))
        self.assertEqual(first, second)
        self.assertEqual(hub.stats().duplicates, 1)

    async def test_stopped_with_a_batch_waiting(self) -> None:
        """A hub stopped before its turn's publishes left: 503, not a hang."""
        hub = self.hub()
        await hub.publish("warm", 0)
        waiting = hub.publish("c", 1)
        await hub.stop()
        with self.assertRaises(HubUnavailable):
            await waiting

    async def test_each_channel_its_own_sequence(self) -> None:
        hub = self.hub()
        ids = [await hub.publish(c, "x") for c in ("a", "b", "a", "c", "b")]
        places = [place(i) for i in ids]
        self.assertEqual([n for _, n in places], [1, 1, 2, 1, 2])
        epochs = {c: place(i)[0] for c, i in zip("abacb", ids, strict=True)}
        self.assertEqual(len(set(epochs.values())), 3)

    async def test_only_the_channels_served(self) -> None:
        """
        A process subscribes to a channel's pub/sub when its first stream
        arrives and unsubscribes after the last leaves; it receives nothing
        of the other channels.
        """
        a, b = self.hub(), self.hub()
        pushes: list[Any] = []
        backend: Any = a._backend
        pushed = backend._pushed

        def counting(push: Any) -> None:
            pushes.append(push[1])
            pushed(push)

        # (Before its connection is made: the connection keeps the callable.)
        backend._pushed = counting
        on_a = await self.subscribed(a, "left")
        on_b = await self.subscribed(b, "right")
        for n in range(10):
            await b.publish("right", n)
            await b.publish("left", n)
        await until(lambda: len(on_a.events) == 10 and len(on_b.events) == 10)
        self.assertEqual(set(pushes), {b"oxian:{left}:3"})
        self.assertEqual(len(pushes), 10)
        self.assertIn("oxian:{left}:3", self.cli("PUBSUB", "CHANNELS"))
        on_a.end()
        await until(lambda: "oxian:{left}:3" not in self.cli("PUBSUB", "CHANNELS"))

    async def test_replay_boundaries(self) -> None:
        """First, middle and last id resume exactly; later ids are unknown."""
        hub = self.hub(history=10)
        ids = [await hub.publish("news", n) for n in range(5)]
        for position, expected in ((0, [1, 2, 3, 4]), (2, [3, 4]), (4, [])):
            stream = await self.subscribed(hub, "news", last=ids[position])
            self.assertEqual(stream.data(), expected)
        epoch, n = place(ids[-1])
        other = "0" * 10 if epoch != "0" * 10 else "1" * 10
        for unknown in (f"{epoch}-{n + 1}", f"{other}-{n}", "junk"):
            stream = await self.subscribed(hub, "news", last=unknown)
            self.assertEqual([e.event for e in stream.events], ["reset"], unknown)
            self.assertEqual(
                json.loads(stream.events[0].data),
                {"channel": "news", "last_event_id": unknown},
            )

    async def test_eviction_by_count_and_bytes(self) -> None:
        """
        ``history`` events are served: Redis may keep a few more (it frees
        whole stream nodes), never serves them. Bytes likewise.
        """
        hub = self.hub(history=3)
        ids = [await hub.publish("news", n) for n in range(5)]
        stream = await self.subscribed(hub, "news", last=ids[1])
        self.assertEqual(stream.data(), [2, 3, 4])
        stream = await self.subscribed(hub, "news", last=ids[0])
        self.assertEqual([e.event for e in stream.events], ["reset"])
        ids += [await hub.publish("news", n) for n in range(5, 400)]
        self.assertLessEqual(int(self.cli("XLEN", "oxian:{news}:s")), 3 + 100)
        stream = await self.subscribed(hub, "news", last=ids[0])
        self.assertEqual([e.event for e in stream.events], ["reset"])
        stream = await self.subscribed(hub, "news", last=ids[-4])
        self.assertEqual(stream.data(), [397, 398, 399])
        # Bytes: each event's lines are 'data: xxxxxxxxxx\n\n' (18 bytes).
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
        # The last id of a channel whose history aged out: nothing missed.
        stream = await self.subscribed(hub, "news", last=ids[1])
        self.assertEqual(stream.events, [])

    async def test_an_id_of_another_channel(self) -> None:
        """An id that does not name a channel's epoch: that channel resets."""
        hub = self.hub()
        other = await hub.publish("other", "x")
        stream = await self.subscribed(hub, "fresh", last=other)
        self.assertEqual([e.event for e in stream.events], ["reset"])

    async def test_multi_channel_resume_across_hubs(self) -> None:
        """One id resumes a two-channel stream exactly, on another process."""
        first, second = self.hub(), self.hub()
        stream = await self.subscribed(first, "a", "b")
        for n in range(3):
            await first.publish("a", f"a{n}")
            await second.publish("b", f"b{n}")
        await until(lambda: len(stream.events) == 6)
        cut = stream.events[2]
        self.assertEqual(len(cut.id.split(".")), 2)  # type: ignore[union-attr]
        got = stream.data()[:3]
        stream.end()
        await first.publish("a", "a3")
        again = await self.subscribed(second, "b", "a", last=cut.id)
        await until(lambda: len(got) + len(again.events) == 7)
        self.assertEqual(
            sorted(got + again.data()), ["a0", "a1", "a2", "a3", "b0", "b1", "b2"]
        )
        self.assertEqual(len(set(again.ids())), len(again.events))

    async def test_paused_redis_publish_may_have_happened(self) -> None:
        """
        Redis frozen while a publish is sent: after the timeout the publish
        fails with 504 ``hub_timeout`` (not 503 "nothing published"),
        and once Redis resumes the event is delivered, as the error said
        it might be.
        """
        self.patch(_client, "REPLY_TIMEOUT", 0.5)
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
        without persistence: the hub reconnects, each stream gets one reset
        per channel (history was lost with Redis: a new epoch), then every
        later publish.
        """
        publisher, subscriber = self.hub(), self.hub()
        stream = await self.subscribed(subscriber, "news")
        first = await publisher.publish("news", 1)
        await until(lambda: len(stream.events) == 1)
        self.redis.stop()
        connection = publisher._backend.nodes._connection  # type: ignore[attr-defined]
        await until(lambda: connection.protocol is None)
        with self.assertRaises(HubUnavailable):
            await publisher.publish("news", 2)
        await deferLater(reactor, 1.0)
        self.redis.start()
        await until(lambda: connection.protocol is not None, 15)
        later = await publisher.publish("news", 3)
        await until(lambda: len(stream.events) == 3, 15)
        await deferLater(reactor, 0.2)
        self.assertEqual(stream.ids(), [first, None, later])
        self.assertEqual(stream.events[1].event, "reset")
        self.assertNotEqual(place(first)[0], place(later)[0])
        self.assertFalse(stream.closed)

    async def test_collector_is_a_subscriber(self) -> None:
        from zope.interface.verify import verifyObject

        from oxian_tw.hub import ISubscriber

        self.assertTrue(verifyObject(ISubscriber, Collector()))


class ConnectionTests(TestCase):
    """How the hub reaches Redis: TLS, credentials."""

    async def test_tls(self) -> None:
        """
        ``rediss://`` to a Redis that speaks only TLS, trusting its
        certificate with ``?ssl_ca_certs=``; without it (the system's CAs),
        the self-signed certificate is refused: 503, nothing published.
        """
        key, cert = make_certificate(self.mktemp())
        redis = RedisServer(self.mktemp(), tls=(key, cert))
        self.addCleanup(redis.stop)
        trusted = RedisHub(
            parse_redis_url(f"{redis.url(0)}?ssl_ca_certs={cert}"), lambda: reactor
        )
        self.addCleanup(trusted.stop)
        stream = Collector()
        trusted.subscribe(stream, ["secure"])  # type: ignore[arg-type]
        await until(lambda: live(trusted, stream))
        published = await trusted.publish("secure", "hello")
        await until(lambda: len(stream.events) == 1)
        self.assertEqual(stream.ids(), [published])
        untrusted = RedisHub(parse_redis_url(redis.url(0)), lambda: reactor)
        self.addCleanup(untrusted.stop)
        with self.assertRaises(HubUnavailable):
            await untrusted.publish("secure", "nope")

    async def test_wrong_password(self) -> None:
        """
        Refused credentials: 503 at once (not a hang), one warning per
        outage, connections retried with a growing delay; the right
        password publishes.
        """
        from twisted.logger import globalLogPublisher

        redis = RedisServer(self.mktemp(), password="s3cret")
        self.addCleanup(redis.stop)
        warned: list[Any] = []

        def observe(event: Any) -> None:
            if "cannot use Redis" in event.get("log_format", ""):
                warned.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        wrong = RedisHub(
            parse_redis_url(f"redis://:nope@127.0.0.1:{redis.port}/0"), lambda: reactor
        )
        self.addCleanup(wrong.stop)
        with self.assertRaises(HubUnavailable):
            await wrong.publish("c", 1)
        await deferLater(reactor, 0.5)
        with self.assertRaises(HubUnavailable):
            await wrong.publish("c", 2)
        self.assertEqual(len(warned), 1)
        self.assertIn("WRONGPASS", str(warned[0]["why"]))
        right = RedisHub(
            parse_redis_url(f"redis://:s3cret@127.0.0.1:{redis.port}/0"),
            lambda: reactor,
        )
        self.addCleanup(right.stop)
        self.assertRegex(await right.publish("c", 3), r"^[0-9a-f]{10}-1$")

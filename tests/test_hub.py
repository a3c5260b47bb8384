"""
The hub (SPEC §11): channels, ids, bounded history, exact replay from
``Last-Event-ID``, resets, encode-once fan-out and stats, on a ``Clock``
through the in-memory client.
"""

from __future__ import annotations

import json
from typing import Any

from oxian_tw.hub import _core
from oxian_tw.sse import encode_fields

from .helpers import RoutesTestCase

ROUTES = {
    "sub.py": """
        def GET(data, ctx):
            channels = data.get("ch", "news").split(",")
            policy = {"slow_consumer": data["policy"]} if "policy" in data else {}
            ctx.response.sse(channels=channels, **policy)
    """,
    "late.py": """
        def GET(data, ctx):
            sse = ctx.response.sse()
            sse.send("before the subscription", event="hello")
            sse.subscribe("news")
    """,
    "twice.py": """
        def GET(data, ctx):
            sse = ctx.response.sse(channels=["news"])
            sse.subscribe("news", "sport")
    """,
    "own.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=["news"])
            ctx.hub.publish("news", "published by the subscriber itself")
    """,
    "bad.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=[""])
    """,
}


class HubTestCase(RoutesTestCase):
    routes = ROUTES
    config: dict[str, Any] = {"hub-history": 5, "hub-history-age": 100}

    def publish(self, channel: str, data: Any, event: str | None = None) -> str:
        result: str = self.successResultOf(self.app.hub.publish(channel, data, event))
        return result

    def subscribe(self, path: str = "/sub", last: str | None = None, **kw: Any) -> Any:
        headers = {"Last-Event-ID": last} if last is not None else {}
        return self.get(path, headers=headers, **kw)

    def data(self, response: Any) -> list[Any]:
        return [json.loads(e.data) for e in response.events()]


class PublishTests(HubTestCase):
    def test_delivery_and_ids(self) -> None:
        """Every subscriber of the channel gets each event, ids in order."""
        first, second = self.subscribe(), self.subscribe()
        other = self.subscribe(query={"ch": "sport"})
        ids = [self.publish("news", {"n": n}, event="story") for n in range(3)]
        self.client.flush()
        for response in (first, second):
            events = response.events()
            self.assertEqual([e.id for e in events], ids)
            self.assertEqual({e.event for e in events}, {"story"})
            self.assertEqual(self.data(response), [{"n": 0}, {"n": 1}, {"n": 2}])
        self.assertEqual(other.events(), [])
        self.assertEqual(len(set(ids)), 3)

    def test_encoded_once(self) -> None:
        """
        One publish encodes once, whatever the number of subscribers; the
        id line is one prefix per group of streams with the same channels.
        """
        calls: list[Any] = []

        def counting(*args: Any) -> bytes:
            calls.append(args)
            return encode_fields(*args)

        responses = [self.subscribe() for _ in range(50)]
        self.patch(_core, "encode_fields", counting)
        self.publish("news", {"big": "x" * 1000})
        self.assertEqual(len(calls), 1)
        self.client.flush()
        self.assertEqual({len(r.events()) for r in responses}, {1})

    def test_bad_input(self) -> None:
        """Bad channel, event or data: a failed Deferred, nothing published."""
        for args in (("", 1), ("a\nb", 1), ("news", 1, "a\nb"), ("news", float("nan"))):
            with self.subTest(args=args):
                self.failureResultOf(self.app.hub.publish(*args), ValueError)
        self.failureResultOf(self.app.hub.publish(7, 1), TypeError)  # type: ignore[arg-type]
        self.assertEqual(self.app.hub.stats().published, 0)
        self.assertEqual(self.get("/bad").code, 500)
        self.flushLoggedErrors(ValueError)

    def test_subscriber_publishing_sees_it_once(self) -> None:
        response = self.get("/own")
        self.client.flush()
        self.assertEqual(
            [e.data for e in response.events()], ["published by the subscriber itself"]
        )


class ReplayTests(HubTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ids = [self.publish("news", n) for n in range(5)]

    def test_boundaries(self) -> None:
        """After the first, a middle and the last id: exactly what followed."""
        for index in (0, 2, 4):
            with self.subTest(after=index):
                response = self.subscribe(last=self.ids[index])
                self.assertEqual(
                    [e.id for e in response.events()], self.ids[index + 1 :]
                )
                live = self.publish("news", "live")
                self.client.flush()
                self.assertEqual(response.events()[-1].id, live)
                self.ids = self.ids[1:] + [live]

    def test_query_parameter(self) -> None:
        response = self.get("/sub", query={"lastEventId": self.ids[3]})
        self.assertEqual([e.id for e in response.events()], self.ids[4:])

    def test_evicted_unknown_malformed(self) -> None:
        """One reset, with the channel and the id, then live events."""
        # History is 5: these evict ids[0] and ids[1], so what followed
        # ids[0] is no longer all there.
        self.publish("news", 5)
        self.publish("news", 6)
        epoch = self.ids[0].rpartition("-")[0]
        # Digits of other scripts pass str.isdigit but are no id (sent in
        # the query: the test client encodes headers as UTF-8).
        lasts = (self.ids[0], "zz-3", "abc", f"{epoch}-999", f"{epoch}-", "")
        for last in lasts + (f"{epoch}-\xb2", f"{epoch}-\u2460"):
            with self.subTest(last=last):
                if last.isascii():
                    response = self.subscribe(last=last)
                else:
                    response = self.get("/sub", query={"lastEventId": last})
                events = response.events()
                self.assertEqual([e.event for e in events], ["reset"])
                self.assertEqual(
                    json.loads(events[0].data),
                    {"channel": "news", "last_event_id": last},
                )
                live = self.publish("news", "after")
                self.client.flush()
                self.assertEqual(response.events()[-1].id, live)
                response.disconnect()
        self.assertEqual(self.app.hub.stats().resets, 8)

    def test_id_before_eviction_still_resumes(self) -> None:
        """An id whose successors are all kept resumes without a reset."""
        self.publish("news", 5)  # evicts ids[0]; ids[1] onwards are kept
        for last, count in ((self.ids[0], 5), (self.ids[1], 4)):
            response = self.subscribe(last=last)
            self.assertEqual([e.event for e in response.events()], [None] * count)

    def test_bytes_and_age(self) -> None:
        """History is bounded by bytes and by age too."""
        self.app.hub._backend._history_bytes = 190
        # 190 bytes (kept without the id line): making room evicts all five
        # earlier events (9 bytes each).
        big = self.publish("news", "x" * 180)
        response = self.subscribe(last=self.ids[3])
        self.assertEqual([e.event for e in response.events()], ["reset"])
        response = self.subscribe(last=self.ids[4])
        self.assertEqual([e.id for e in response.events()], [big])
        self.clock.advance(101)  # history-age is 100
        response = self.subscribe(last=self.ids[4])
        self.assertEqual([e.event for e in response.events()], ["reset"])
        response = self.subscribe(last=big)
        self.assertEqual(response.events(), [])

    def test_multiple_channels(self) -> None:
        """
        A stream on two channels: each event's id names its position in both
        (in the order of the channels' names), and that one id resumes both
        exactly, each channel in its own order.
        """
        response = self.subscribe(query={"ch": "sport,news"})
        sport = [self.publish("sport", f"s{n}") for n in range(2)]
        news = self.publish("news", "n5")
        self.client.flush()
        seen = response.events()
        self.assertEqual(
            [e.id for e in seen],
            [
                f"{self.ids[4]}.{sport[0]}",
                f"{self.ids[4]}.{sport[1]}",
                f"{news}.{sport[1]}",
            ],
        )
        response.disconnect()
        missed = [self.publish("sport", "s2"), self.publish("news", "n6")]
        again = self.subscribe(query={"ch": "news,sport"}, last=seen[1].id)
        self.assertEqual([e.data for e in again.events()], ["n5", "n6", "s2"])
        self.assertEqual(again.events()[-1].id, f"{missed[1]}.{missed[0]}")
        # A stream on one channel of the two resumes from the same id.
        single = self.subscribe(query={"ch": "sport"}, last=seen[0].id)
        self.assertEqual([e.data for e in single.events()], ["s1", "s2"])
        self.assertEqual(single.events()[-1].id, missed[0])

    def test_subscribe_later(self) -> None:
        """``sse.subscribe()`` after other sends resumes from the header too."""
        response = self.get("/late", headers={"Last-Event-ID": self.ids[2]})
        self.assertEqual([e.event for e in response.events()], ["hello", None, None])

    def test_subscribing_again_replays_once(self) -> None:
        """
        A channel the stream already has is not replayed again; one its id
        does not name gets a reset (its position is unknown).
        """
        self.publish("sport", "s")
        response = self.get("/twice", headers={"Last-Event-ID": self.ids[2]})
        events = response.events()
        self.assertEqual([e.id for e in events[:2]], self.ids[3:])
        self.assertEqual(
            [(e.event, json.loads(e.data)["channel"]) for e in events[2:]],
            [("reset", "sport")],
        )
        self.assertEqual(self.app.hub.stats().subscribers, 2)
        live = self.publish("sport", "s2")
        self.client.flush()
        self.assertEqual(response.events()[-1].id, f"{self.ids[4]}.{live}")

    def test_reconnect_loses_nothing(self) -> None:
        """A client cut for being slow comes back with its last id: no gap."""
        response = self.subscribe()
        response.stop_reading()
        for n in range(3):
            self.publish("news", {"n": n, "pad": "x" * 100})
        self.client.flush()
        seen = response.events()
        response.disconnect()
        last = seen[-1].id if seen else self.ids[-1]
        more = [self.publish("news", {"n": n}) for n in range(3, 5)]
        again = self.subscribe(last=last)
        self.client.flush()
        ids = [e.id for e in seen] + [e.id for e in again.events()]
        self.assertEqual(ids[-2:], more)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len(ids), 5)


class SlowSubscriberTests(HubTestCase):
    config = {"sse-budget": 4096, "hub-history": 1000}

    def settle(self) -> None:
        """
        Let lagging streams catch up: each round sends what fits the
        budget, and the next begins once the socket drained.
        """
        for _ in range(200):
            self.client.flush()
            self.clock.advance(0)

    def test_lag_by_default_disconnect_on_request(self) -> None:
        """
        Hub events never leave a silent hole (SPEC §5.5): a frozen stream
        under the default policy (or "drop") lags and, once it reads again,
        is caught up from history, every event once, in order; under
        "disconnect" it is cut and resumes with its last id.
        """
        reader = self.subscribe()
        lagging = self.subscribe()
        dropping = self.subscribe(query={"policy": "drop"})
        frozen = self.subscribe(query={"policy": "disconnect"})
        for response in (lagging, dropping, frozen):
            response.stop_reading()
        for n in range(400):
            self.publish("news", {"n": n, "pad": "x" * 200})
            self.client.flush()
        self.assertEqual(len(reader.events()), 400)
        self.assertTrue(frozen.complete)  # its connection ended
        self.assertEqual(len(self.app.streams), 3)
        stats = self.app.hub.stats()
        self.assertGreaterEqual(stats.lagged, 2)
        for response in (lagging, dropping):
            response.resume_reading()
        self.settle()
        for response in (lagging, dropping):
            got = [json.loads(e.data)["n"] for e in response.events()]
            self.assertEqual(got, list(range(400)))
        (dropper,) = [s for s in self.app.streams if s.slow_consumer == "drop"]
        self.assertEqual(dropper.dropped, 0)

    def test_lag_past_history_resets(self) -> None:
        """A stream that lagged past what history keeps gets one reset."""
        self.app.hub._backend._history = 50
        lagging = self.subscribe()
        lagging.stop_reading()
        for n in range(400):
            self.publish("news", {"n": n, "pad": "x" * 200})
            self.client.flush()
        lagging.resume_reading()
        self.settle()
        events = lagging.events()
        kinds = [e.event for e in events]
        # Everything up to where it fell behind, then one reset (history
        # kept the last 50 only), then live events.
        self.assertEqual(kinds.count("reset"), 1)
        before = [json.loads(e.data)["n"] for e in events[: kinds.index("reset")]]
        self.assertEqual(before, list(range(len(before))))
        self.assertEqual(kinds[kinds.index("reset") + 1 :], [])
        self.publish("news", {"n": 400})
        self.settle()
        self.assertEqual(json.loads(lagging.events()[-1].data), {"n": 400})


class StatsTests(HubTestCase):
    def test_counters(self) -> None:
        first = self.subscribe(query={"ch": "news,sport"})
        self.subscribe()
        self.publish("news", 1)
        last = self.publish("news", 2)
        self.subscribe(last=last)
        self.subscribe(last="nope")
        stats = self.app.hub.stats()
        self.assertEqual(
            (stats.channels, stats.subscribers, stats.published, stats.delivered),
            (2, 5, 2, 4),
        )
        self.assertEqual((stats.replayed, stats.resets, stats.dropped), (0, 1, 0))
        first.disconnect()
        self.client.flush()
        self.assertEqual(self.app.hub.stats().subscribers, 3)

    def test_idle_channels_forgotten(self) -> None:
        """A channel without history or subscribers is forgotten."""
        response = self.subscribe(query={"ch": "user-1"})
        response.disconnect()
        self.client.flush()
        self.assertEqual(self.app.hub.stats().channels, 0)

    def test_sweep_forgets_aged_channels(self) -> None:
        """
        Aged history of channels nobody publishes on is swept, the channel
        forgotten; a client resuming from before that gets a reset.
        """
        last = self.publish("user-1", "hi")
        self.publish("user-1", "missed")
        self.assertEqual(len(self.app.hub._backend._channels), 1)
        self.clock.advance(201)  # forgotten at twice the age (100)
        self.assertEqual(len(self.app.hub._backend._channels), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        response = self.subscribe(query={"ch": "user-1"}, last=last)
        self.assertEqual([e.event for e in response.events()], ["reset"])


class ExpositionTests(HubTestCase):
    def test_prometheus_text(self) -> None:
        """Every counter, typed, with its value."""
        from oxian_tw.metrics import exposition

        self.subscribe()
        self.publish("news", 1)
        from prometheus_client.parser import text_string_to_metric_families

        families = {
            f.name: f
            for f in text_string_to_metric_families(exposition(self.app).decode())
        }
        self.assertEqual(families["oxian_hub_published"].type, "counter")
        self.assertEqual(families["oxian_hub_channels"].type, "gauge")
        for name, value in (
            ("oxian_hub_published", 1),
            ("oxian_hub_delivered", 1),
            ("oxian_hub_channels", 1),
            ("oxian_hub_subscriptions", 1),
        ):
            self.assertEqual(families[name].samples[0].value, value, name)
        (streams,) = families["oxian_sse_streams"].samples
        self.assertEqual((streams.labels, streams.value), ({"route": "/sub"}, 1))

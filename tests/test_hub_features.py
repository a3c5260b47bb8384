"""
What SPEC §11 added to the hub, in the in-process backend on a ``Clock``:
history on subscribe (``history=N``, ``Last-Event-ID: earliest``),
idempotent publish, presence with join/leave events, and epochs across
process restarts. The Redis backend is held to the same rules against a
real ``redis-server`` in ``tests.test_redis_features``.
"""

from __future__ import annotations

import json
from typing import Any

from oxian_tw import OxianApp
from oxian_tw.hub import IDEMPOTENCY_WINDOW, MemoryHub
from oxian_tw.testing import TestClient

from .helpers import RoutesTestCase

ROUTES = {
    "sub.py": """
        import json

        def GET(data, ctx):
            presence = data.get("who")
            ctx.response.sse(
                channels=data.get("ch", "news").split(","),
                history=int(data.get("history", 0)),
                presence=None if presence is None else {"user": presence},
                presence_events=data.get("events") == "1",
            )
    """,
    "bad_history.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=["news"], history=-1)
    """,
    "big_presence.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=["news"], presence={"x": "y" * 2000})
    """,
    "who.py": """
        async def GET(data, ctx):
            return await ctx.hub.presence(data["ch"])
    """,
}


class HubFeatureTestCase(RoutesTestCase):
    routes = ROUTES
    config: dict[str, Any] = {"hub-history": 5, "hub-history-age": 100}

    def publish(self, channel: str, data: Any, **kw: Any) -> str:
        result: str = self.successResultOf(self.app.hub.publish(channel, data, **kw))
        return result

    def subscribe(self, last: str | None = None, **query: str) -> Any:
        headers = {"Last-Event-ID": last} if last is not None else {}
        return self.get("/sub", headers=headers, query=query)

    def seen(self, response: Any) -> list[tuple[str | None, Any]]:
        """(event, data) of what arrived; data decoded when it is JSON."""
        self.client.flush()
        return [(e.event, _decoded(e.data)) for e in response.events()]


def _decoded(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


class HistoryTests(HubFeatureTestCase):
    def test_fewer_kept_than_asked(self) -> None:
        """history=N with fewer kept: all of them, then live events."""
        ids = [self.publish("news", n) for n in range(2)]
        response = self.subscribe(history="3")
        self.assertEqual([e.id for e in response.events()], ids)
        live = self.publish("news", 2)
        self.client.flush()
        self.assertEqual(response.events()[-1].id, live)

    def test_last_n(self) -> None:
        """Exactly the last N, oldest first; history=1 is the latest value."""
        for n in range(5):
            self.publish("news", n)
        self.assertEqual(
            [d for _, d in self.seen(self.subscribe(history="3"))], [2, 3, 4]
        )
        self.assertEqual([d for _, d in self.seen(self.subscribe(history="1"))], [4])
        self.assertEqual(self.seen(self.subscribe()), [])

    def test_several_channels_each_in_its_order(self) -> None:
        """The last N of each channel, each channel in its own order."""
        self.publish("news", "n0")
        self.publish("sport", "s0")
        self.publish("news", "n1")
        self.publish("news", "n2")
        self.publish("sport", "s1")
        response = self.subscribe(history="2", ch="news,sport")
        self.assertEqual([d for _, d in self.seen(response)], ["n1", "n2", "s0", "s1"])

    def test_publish_racing_the_subscription(self) -> None:
        """
        A publish made by the handler right after subscribing (in the same
        turn) comes once, after the history.
        """
        for n in range(3):
            self.publish("news", n)
        self.app.hub.publish("news", "racing")
        response = self.subscribe(history="2")
        self.app.hub.publish("news", "after")
        ids = [e.id for e in response.events()]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual([d for _, d in self.seen(response)], [2, "racing", "after"])

    def test_last_event_id_wins(self) -> None:
        """With a Last-Event-ID, history=N is not used: exact resume instead."""
        ids = [self.publish("news", n) for n in range(4)]
        response = self.subscribe(last=ids[2], history="3")
        self.assertEqual([d for _, d in self.seen(response)], [3])

    def test_earliest(self) -> None:
        """Last-Event-ID: earliest replays everything kept, without a reset."""
        for n in range(7):
            self.publish("news", n)
        self.publish("sport", "s")
        response = self.subscribe(last="earliest", ch="news,sport")
        self.assertEqual([d for _, d in self.seen(response)], [2, 3, 4, 5, 6, "s"])
        query = self.get("/sub", query={"lastEventId": "earliest"})
        self.assertEqual(len(self.seen(query)), 5)

    def test_bad_history_is_a_500_before_the_stream(self) -> None:
        response = self.get("/bad_history")
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class IdempotencyTests(HubFeatureTestCase):
    def test_same_key_once(self) -> None:
        """Same key, same channel: one event, the first id."""
        response = self.subscribe()
        first = self.publish("news", "a", idempotency_key="k1")
        again = self.publish("news", "a (retried)", idempotency_key="k1")
        self.assertEqual(again, first)
        self.assertEqual(self.seen(response), [(None, "a")])
        stats = self.app.hub.stats()
        self.assertEqual((stats.published, stats.duplicates), (1, 1))

    def test_channels_do_not_collide(self) -> None:
        news = self.publish("news", "a", idempotency_key="k")
        sport = self.publish("sport", "a", idempotency_key="k")
        self.assertNotEqual(news, sport)

    def test_window(self) -> None:
        """Within 5 minutes the key holds; after, it publishes anew."""
        first = self.publish("news", "a", idempotency_key="k")
        self.clock.advance(IDEMPOTENCY_WINDOW - 1)
        self.assertEqual(self.publish("news", "a", idempotency_key="k"), first)
        self.clock.advance(1)
        self.assertNotEqual(self.publish("news", "a", idempotency_key="k"), first)

    def test_bad_keys(self) -> None:
        for key in ("", "x" * 257):
            self.failureResultOf(
                self.app.hub.publish("news", "a", idempotency_key=key), ValueError
            )
        self.failureResultOf(
            self.app.hub.publish("news", "a", idempotency_key=1), TypeError
        )
        self.assertEqual(self.app.hub.stats().published, 0)


class PresenceTests(HubFeatureTestCase):
    def present(self, channel: str = "news") -> dict[str, Any]:
        result: dict[str, Any] = self.successResultOf(self.app.hub.presence(channel))
        return result

    def test_presence_map(self) -> None:
        """Present while open, with the info given; gone when the stream ends."""
        alice = self.subscribe(who="alice", ch="news,sport")
        self.subscribe()  # subscribed, not present
        self.assertEqual(sorted(i["user"] for i in self.present().values()), ["alice"])
        self.assertEqual(list(self.present("sport").values()), [{"user": "alice"}])
        bob = self.subscribe(who="bob")
        self.assertEqual(
            sorted(i["user"] for i in self.present().values()), ["alice", "bob"]
        )
        self.assertEqual(len(set(self.present())), 2)
        alice.disconnect()
        self.assertEqual(list(self.present().values()), [{"user": "bob"}])
        self.assertEqual(self.present("sport"), {})
        bob.disconnect()
        self.assertEqual(self.present(), {})
        self.assertEqual(self.app.hub.stats().present, 0)

    def test_join_and_leave_events(self) -> None:
        """join (to everyone, the joiner too) and leave, in order, with the info."""
        watcher = self.subscribe()
        alice = self.subscribe(who="alice", events="1")
        (sid,) = self.present()
        bob = self.subscribe(who="bob", events="1")
        alice.disconnect()
        bob.disconnect()
        events = self.seen(watcher)
        self.assertEqual(
            [(e, d["info"]["user"]) for e, d in events],
            [("join", "alice"), ("join", "bob"), ("leave", "alice"), ("leave", "bob")],
        )
        self.assertEqual(
            events[0][1], {"channel": "news", "id": sid, "info": {"user": "alice"}}
        )
        self.assertEqual([e.event for e in alice.events()], ["join", "join"])
        # Not kept: a later subscriber asking for history gets none of them.
        self.assertEqual(self.seen(self.subscribe(history="5")), [])

    def test_presence_without_events_is_silent(self) -> None:
        watcher = self.subscribe()
        self.subscribe(who="quiet").disconnect()
        self.assertEqual(self.seen(watcher), [])

    def test_info_over_one_kib(self) -> None:
        self.assertEqual(self.get("/big_presence").code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.present(), {})

    def test_route(self) -> None:
        self.subscribe(who="alice")
        response = self.get("/who", query={"ch": "news"})
        self.assertEqual(list(response.json().values()), [{"user": "alice"}])


class EpochTests(HubFeatureTestCase):
    def test_restart_resets(self) -> None:
        """
        An in-memory hub's history dies with its process: an id from before a
        restart gets a reset, never a replay of what the new process has.
        """
        ids = [self.publish("news", n) for n in range(3)]
        self.clock.advance(1)
        restarted = OxianApp(self.root, reactor=self.clock, config=self.config)
        client = TestClient(restarted, clock=self.clock)
        for n in range(3):
            self.successResultOf(restarted.hub.publish("news", n))
        response = self.successResultOf(
            client.get("/sub", headers={"Last-Event-ID": ids[0]})
        )
        client.flush()
        self.assertEqual([e.event for e in response.events()], ["reset"])
        self.assertEqual(
            json.loads(response.events()[0].data),
            {"channel": "news", "last_event_id": ids[0]},
        )

    def test_every_id_names_its_channels_epoch(self) -> None:
        """Each channel has its own epoch and sequence (SPEC §11.1)."""
        hub = MemoryHub(lambda: self.clock)
        ids = {
            c: [self.successResultOf(hub.publish(c, n)) for n in range(2)] for c in "ab"
        }
        epochs = {c: {i.rpartition("-")[0] for i in ids[c]} for c in "ab"}
        self.assertEqual([len(e) for e in epochs.values()], [1, 1])
        self.assertNotEqual(epochs["a"], epochs["b"])
        self.assertEqual([i.rpartition("-")[2] for i in ids["a"]], ["1", "2"])
        self.assertEqual([i.rpartition("-")[2] for i in ids["b"]], ["1", "2"])

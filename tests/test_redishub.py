"""
The Redis hub's own logic on a ``Clock``, against a stand-in connection the
test answers: what it asks Redis, how replays and live events meet without
gap or duplicate, reconnection, and failure. The Lua scripts themselves run
against a real Redis in ``test_redis_server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost

from oxian_tw import HubTimeout, HubUnavailable
from oxian_tw._eventstream import EventStream
from oxian_tw.hub import _redis as _redishub
from oxian_tw.hub._client import parse_redis_url
from oxian_tw.hub._redis import PUBLISH_SCRIPT, REPLAY_SCRIPT, RedisHub
from oxian_tw.hub._resp import Push, RespError

from .helpers import RoutesTestCase
from .test_hub import ROUTES

PUBSUB = b"oxian:hub:0"


class FakeProtocol:
    """The commands the hub sends, each waiting for the test's answer."""

    open = True

    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis

    def command(self, *args: Any) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self._redis.sent.append((args, answer))
        return answer

    def subscribe(self, channel: bytes) -> Deferred[None]:
        self._redis.subscribed.append(channel)
        return succeed(None)


class FakeRedis:
    """Stands in for `RedisConnection`; the test connects and loses it."""

    def __init__(
        self, address: Any, reactor: Any, *, on_push: Any, prepare: Any, on_ready: Any
    ) -> None:
        self.on_push, self.prepare, self.on_ready = on_push, prepare, on_ready
        self.protocol: FakeProtocol | None = None
        self.was_ready = False
        self.running = False
        self.sent: list[tuple[tuple[Any, ...], Deferred[Any]]] = []
        self.subscribed: list[bytes] = []
        self._attempts: list[Deferred[Any]] = []

    def start(self) -> None:
        self.running = True

    def stop(self) -> Deferred[None]:
        self.running = False
        return succeed(None)

    def first_attempt(self) -> Deferred[Any]:
        attempt: Deferred[Any] = Deferred()
        self._attempts.append(attempt)
        return attempt

    def connect(self) -> None:
        protocol = FakeProtocol(self)
        self.prepare(protocol)
        self.protocol, self.was_ready = protocol, True
        self.on_ready(protocol)
        attempts, self._attempts = self._attempts, []
        for attempt in attempts:
            attempt.callback(protocol)

    def refuse(self) -> None:
        attempts, self._attempts = self._attempts, []
        for attempt in attempts:
            attempt.errback(ConnectionLost("refused"))

    def lose(self) -> None:
        self.protocol = None
        sent, self.sent = self.sent, []
        for _, answer in sent:
            if not answer.called:
                answer.errback(ConnectionLost("gone"))


def _entry(event_id: str, data: str) -> list[Any]:
    return [event_id.encode(), [b"w", f"data: {data}\n".encode()]]


class RedisHubTestCase(RoutesTestCase):
    routes = {
        **ROUTES,
        "publish.py": """
            async def POST(data, ctx):
                return {"id": await ctx.hub.publish("news", data["message"])}
        """,
    }

    def setUp(self) -> None:
        super().setUp()
        self.redis: FakeRedis | None = None

        def connect(*args: Any, **kwargs: Any) -> FakeRedis:
            self.redis = FakeRedis(*args, **kwargs)
            return self.redis

        self.app.hub = self.hub = RedisHub(
            parse_redis_url("redis://r"),
            lambda: self.clock,
            history=5,
            history_bytes=1000,
            history_age=100,
            connect=connect,
        )

    def connect(self, newest: str = "10-5") -> FakeRedis:
        """Start and connect the hub; answer its "where are we" replay."""
        self.hub.start()
        assert self.redis is not None
        self.redis.connect()
        ((args, answer),) = self.take()
        self.assertEqual(
            args,
            (
                b"EVALSHA",
                _redishub._sha(REPLAY_SCRIPT),
                1,
                "oxian:hub:head",
                "",
                "100000",
                "5",
                "tail",
                "0",
                "0",
            ),
        )
        answer.callback([b"e", newest.encode()])
        return self.redis

    def take(self) -> list[tuple[tuple[Any, ...], Deferred[Any]]]:
        assert self.redis is not None
        sent, self.redis.sent = self.redis.sent, []
        return sent

    def push(self, channel: str, event_id: str, data: str) -> None:
        assert self.redis is not None
        message = f"e\n{channel}\n{event_id}\ndata: {data}\n".encode()
        self.redis.on_push(Push([b"message", PUBSUB, message]))

    def subscribe(self, last: str | None = None, channels: str = "news") -> Any:
        headers = {"Last-Event-ID": last} if last is not None else {}
        return self.get("/sub", headers=headers, query={"ch": channels})

    def seen(self, response: Any) -> list[tuple[str | None, str | None, str]]:
        self.client.flush()
        return [(e.event, e.id, e.data) for e in response.events()]


class PublishTests(RedisHubTestCase):
    def test_one_script_call(self) -> None:
        """A publish is one EVALSHA of the publish script with the event's lines."""
        self.connect()
        published = self.hub.publish("news", {"n": 1}, event="story")
        ((args, answer),) = self.take()
        self.assertEqual(
            args,
            (
                b"EVALSHA",
                _redishub._sha(PUBLISH_SCRIPT),
                4,
                "oxian:hub:head",
                "oxian:hub:s:news",
                "oxian:hub:m:news",
                "oxian:hub:i:news:",
                b'event: story\ndata: {"n":1}\n',
                "100000",
                "5",
                "1000",
                PUBSUB,
                "news",
                "0",
                "300000",
            ),
        )
        self.assertNoResult(published)
        answer.callback([b"e-1700000000000-6", 0])
        self.assertEqual(self.successResultOf(published), "e-1700000000000-6")
        self.assertEqual(self.hub.stats().published, 1)

    def test_encoded_once(self) -> None:
        """Encoded once by the publisher; a process builds each event's wire once."""
        self.connect()
        calls: list[Any] = []

        def counting(*args: Any) -> bytes:
            calls.append(args)
            return real(*args)

        real = _redishub.encode_fields
        self.patch(_redishub, "encode_fields", counting)
        self.hub.publish("news", "x")
        self.assertEqual(len(calls), 1)
        subscribers = [self.subscribe() for _ in range(3)]
        payloads: list[bytes] = []
        real_deliver = EventStream._deliver
        self.patch(
            EventStream,
            "_deliver",
            lambda stream, wire: payloads.append(wire) or real_deliver(stream, wire),
        )
        self.push("news", "e-10-6", "x")
        self.assertEqual(len(payloads), 3)
        self.assertEqual(len({id(p) for p in payloads}), 1)
        for response in subscribers:
            self.assertEqual(self.seen(response), [(None, "e-10-6", "x")])

    def test_unknown_script_sent_once(self) -> None:
        """NOSCRIPT (Redis restarted or flushed): the script's text is sent."""
        self.connect()
        published = self.hub.publish("news", "x")
        ((_, answer),) = self.take()
        answer.errback(RespError("NOSCRIPT No matching script"))
        ((args, answer),) = self.take()
        self.assertEqual(args[:3], (b"EVAL", PUBLISH_SCRIPT, 4))
        answer.callback([b"e-10-6", 0])
        self.assertEqual(self.successResultOf(published), "e-10-6")

    def test_bad_input_sends_nothing(self) -> None:
        self.connect()
        self.failureResultOf(self.hub.publish("", "x"), ValueError)
        self.failureResultOf(self.hub.publish("news", object()), TypeError)
        self.assertEqual(self.take(), [])

    def test_waits_for_the_first_connection(self) -> None:
        """Before Redis was ever reached, a publish waits for that attempt."""
        published = self.hub.publish("news", "x")
        assert self.redis is not None
        self.assertTrue(self.redis.running)
        self.assertNoResult(published)
        self.redis.connect()
        (_, position), (args, answer) = self.take()
        self.assertEqual(args[-3], "news")
        answer.callback([b"e-10-6", 0])
        self.assertEqual(self.successResultOf(published), "e-10-6")

    def test_first_connection_refused(self) -> None:
        published = self.hub.publish("news", "x")
        assert self.redis is not None
        self.redis.refuse()
        failure = self.failureResultOf(published, HubUnavailable)
        self.assertEqual(failure.value.status, 503)

    def test_down_fails_at_once(self) -> None:
        """Lost Redis: 503 at once, one log line for the outage, not one per publish."""
        redis = self.connect()
        redis.lose()
        for _ in range(3):
            failure = self.failureResultOf(
                self.hub.publish("news", "x"), HubUnavailable
            )
        self.assertEqual(failure.value.headers, {"Retry-After": "5"})
        self.assertEqual(self.take(), [])
        self.assertEqual(self.log_text().count("publish failed"), 1)

    def test_lost_while_publishing(self) -> None:
        """
        Sent, then the connection is lost before the reply: the outcome is
        unknown, a 504 ``hub_timeout``, not a 503 saying nothing was sent.
        """
        redis = self.connect()
        published = self.hub.publish("news", "x")
        redis.lose()
        failure = self.failureResultOf(published, HubTimeout)
        self.assertEqual(
            (failure.value.status, failure.value.code), (504, "hub_timeout")
        )
        self.assertIn("may have been published", failure.value.message)
        self.assertEqual(self.hub.stats().published, 0)

    def test_unanswered_times_out(self) -> None:
        """
        A Redis that does not answer a publish sent to it: 504 after
        PUBLISH_TIMEOUT seconds, logged once for the outage; a reply
        arriving later is ignored.
        """
        self.connect()
        published = self.hub.publish("news", "x")
        again = self.hub.publish("news", "y")
        self.clock.advance(_redishub.PUBLISH_TIMEOUT - 0.1)
        self.assertNoResult(published)
        self.clock.advance(0.1)
        self.failureResultOf(published, HubTimeout)
        self.failureResultOf(again, HubTimeout)
        self.assertEqual(self.log_text().count("may have been published"), 1)
        for _, answer in self.take():
            answer.callback([b"e-10-6", 0])  # too late: nothing happens

    def test_error_reply_is_unavailable(self) -> None:
        """Redis answering the publish with an error ran nothing: 503."""
        from oxian_tw.hub._resp import RespError

        self.connect()
        published = self.hub.publish("news", "x")
        ((_, answer),) = self.take()
        answer.errback(RespError(b"OOM command not allowed"))
        self.failureResultOf(published, HubUnavailable)

    def test_never_connected_in_time(self) -> None:
        """
        Still connecting for the first time when the timeout passes:
        nothing was sent, so 503.
        """
        published = self.hub.publish("news", "x")
        self.clock.advance(_redishub.PUBLISH_TIMEOUT)
        self.failureResultOf(published, HubUnavailable)

    def test_error_route_answers_503(self) -> None:
        """Unhandled in a route, the failure is a 503 JSON error."""
        redis = self.connect()
        redis.lose()
        response = self.successResultOf(
            self.client.post("/publish", json={"message": "hi"})
        )
        self.assertEqual(response.code, 503)
        self.assertEqual(response.json()["error"]["code"], "hub_unavailable")


class ReplayTests(RedisHubTestCase):
    def test_live_only_without_last_id(self) -> None:
        self.connect()
        response = self.subscribe()
        self.assertEqual(self.take(), [])
        self.push("news", "e-10-6", "a")
        self.push("sport", "e-10-7", "b")
        self.assertEqual(self.seen(response), [(None, "e-10-6", "a")])

    def test_replay_races_live_events(self) -> None:
        """
        Live events that arrive before the replay's answer wait; those the
        replay holds (not newer than its newest id) are not sent twice.
        """
        self.connect()
        response = self.subscribe(last="e-10-2")
        ((args, answer),) = self.take()
        self.assertEqual(
            args,
            (
                b"EVALSHA",
                _redishub._sha(REPLAY_SCRIPT),
                3,
                "oxian:hub:head",
                "oxian:hub:s:news",
                "oxian:hub:m:news",
                "e",
                "100000",
                "5",
                "after",
                "10-2",
                "0",
            ),
        )
        self.push("news", "e-10-6", "f")
        self.push("news", "e-10-7", "g")
        self.assertEqual(self.seen(response), [])
        answer.callback(
            [
                b"e",
                b"10-6",
                0,
                [_entry("10-3", "c"), _entry("10-4", "d"), _entry("10-6", "f")],
            ]
        )
        self.push("news", "e-10-8", "h")
        self.assertEqual(
            [(i, d) for _, i, d in self.seen(response)],
            [
                ("e-10-3", "c"),
                ("e-10-4", "d"),
                ("e-10-6", "f"),
                ("e-10-7", "g"),
                ("e-10-8", "h"),
            ],
        )
        self.assertEqual(self.hub.stats().replayed, 3)

    def test_several_channels_merge_in_order(self) -> None:
        self.connect()
        response = self.subscribe(last="e-10-1", channels="news,sport")
        ((args, answer),) = self.take()
        self.assertEqual(
            args[3:8],
            (
                "oxian:hub:head",
                "oxian:hub:s:news",
                "oxian:hub:m:news",
                "oxian:hub:s:sport",
                "oxian:hub:m:sport",
            ),
        )
        answer.callback(
            [
                b"e",
                b"10-5",
                0,
                [_entry("10-2", "n2"), _entry("10-5", "n5")],
                0,
                [_entry("10-3", "s3")],
            ]
        )
        self.assertEqual([d for _, _, d in self.seen(response)], ["n2", "s3", "n5"])

    def test_reset(self) -> None:
        """A channel Redis says cannot be resumed gets one reset, then live events."""
        self.connect()
        response = self.subscribe(last="e-10-1")
        ((_, answer),) = self.take()
        answer.callback([b"e", b"10-5", 1, []])
        self.push("news", "e-10-6", "live")
        events = self.seen(response)
        self.assertEqual(events[0][0], "reset")
        self.assertIn('"last_event_id":"e-10-1"', events[0][2])
        self.assertEqual(events[1:], [(None, "e-10-6", "live")])
        self.assertEqual(self.hub.stats().resets, 1)

    def test_refused_replay_resets(self) -> None:
        """A replay Redis refuses (not a lost connection) resets, then live events."""
        self.connect()
        response = self.subscribe(last="e-10-1")
        ((_, answer),) = self.take()
        self.push("news", "e-10-6", "waited")
        answer.errback(RespError("ERR script failed"))
        self.push("news", "e-10-7", "live")
        events = self.seen(response)
        self.assertEqual([e[0] for e in events], ["reset", None, None])
        self.assertEqual([e[2] for e in events[1:]], ["waited", "live"])
        self.assertIn("refused the replay", self.log_text())

    def test_malformed_id_resets_without_asking(self) -> None:
        self.connect()
        for last in ("nope", "1-2", "g-1-2", "-1-1", "1" * 17 + "-1-1", "e-1-2-3"):
            response = self.subscribe(last=last)
            self.assertEqual(self.take(), [])
            ((event, _, data),) = self.seen(response)
            self.assertEqual(event, "reset")

    def test_subscribed_before_connecting(self) -> None:
        """A replay asked while Redis is unreachable runs once it is back."""
        self.hub.start()
        response = self.subscribe(last="e-10-1")
        assert self.redis is not None
        self.redis.connect()
        (_, position), (args, answer) = self.take()
        self.assertEqual(args[-6:], ("e", "100000", "5", "after", "10-1", "0"))
        position.callback([b"e", b"10-2"])
        answer.callback([b"e", b"10-2", 0, [_entry("10-2", "b")]])
        self.assertEqual(self.seen(response), [(None, "e-10-2", "b")])

    def test_slow_replay_disconnects(self) -> None:
        """Past `history` waiting live events the stream is cut, to resume later."""
        self.connect()
        response = self.subscribe(last="e-10-1")
        for n in range(6, 12):
            self.push("news", f"e-10-{n}", "x")
        self.client.flush()
        self.assertTrue(response.complete)
        self.assertIn("replay took too long", self.log_text())
        self.assertEqual(self.hub.stats().subscribers, 0)


class ReconnectTests(RedisHubTestCase):
    def test_streams_catch_up_after_reconnecting(self) -> None:
        """
        While Redis is away the stream stays open; once back, one replay
        from the last event seen brings what was missed, then live events.
        """
        redis = self.connect()
        response = self.subscribe()
        other = self.subscribe(channels="sport")
        self.push("news", "e-10-6", "a")
        redis.lose()
        self.clock.advance(30)
        self.assertFalse(response.complete)
        redis.connect()
        ((args, answer),) = self.take()
        self.assertEqual(
            args[2:],
            (
                5,
                "oxian:hub:head",
                "oxian:hub:s:news",
                "oxian:hub:m:news",
                "oxian:hub:s:sport",
                "oxian:hub:m:sport",
                "e",
                "100000",
                "5",
                "after",
                "10-6",
                "1",
            ),
        )
        self.push("news", "e-10-9", "d")
        answer.callback(
            [b"e", b"10-8", 0, [_entry("10-7", "b"), _entry("10-8", "c")], 0, []]
        )
        self.assertEqual(
            [(i, d) for _, i, d in self.seen(response) if i],
            [("e-10-6", "a"), ("e-10-7", "b"), ("e-10-8", "c"), ("e-10-9", "d")],
        )
        self.assertEqual([e for e in self.seen(other) if e[1]], [])
        # Caught up: later events go straight through, and a second outage
        # resumes after the newest event, not the old position.
        self.push("news", "e-10-10", "e")
        self.assertEqual(self.seen(response)[-1][1:], ("e-10-10", "e"))
        redis.lose()
        redis.connect()
        ((args, _),) = self.take()
        self.assertEqual(args[-6:], ("e", "100000", "5", "after", "10-10", "1"))

    def test_refill_lost_again_starts_from_the_same_place(self) -> None:
        """Live events seen during an unanswered refill do not move the resume point."""
        redis = self.connect()
        self.subscribe()
        self.push("news", "e-10-6", "a")
        redis.lose()
        redis.connect()
        self.push("news", "e-10-9", "d")
        redis.lose()
        redis.connect()
        ((args, _),) = self.take()
        self.assertEqual(args[-6:], ("e", "100000", "5", "after", "10-6", "1"))

    def test_unanswered_replay_asked_again(self) -> None:
        redis = self.connect()
        response = self.subscribe(last="e-10-1")
        redis.lose()
        redis.connect()
        sent = self.take()
        afters = sorted(args[-2] for args, _ in sent)
        self.assertEqual(afters, ["10-1", "10-5"])
        for args, answer in sent:
            if args[-2] == "10-1":
                answer.callback([b"e", b"10-5", 0, [_entry("10-4", "x")]])
            else:
                answer.callback([b"e", b"10-5", 0, []])
        self.assertEqual(self.seen(response), [(None, "e-10-4", "x")])

    def test_shutdown_disconnects(self) -> None:
        redis = self.connect()
        self.successResultOf(self.app.shutdown())
        self.assertFalse(redis.running)


class GapTests(RedisHubTestCase):
    def test_hole_caught_up_before_newer_events(self) -> None:
        """
        ``n`` jumps (a pub/sub message lost): the newer event waits, one
        replay from the last event seen fills the hole, then it follows.
        """
        self.connect()
        response = self.subscribe()
        self.push("news", "e-10-6", "a")
        self.push("news", "e-10-8", "c")
        ((args, answer),) = self.take()
        self.assertEqual(args[-6:], ("e", "100000", "5", "after", "10-6", "1"))
        self.assertEqual([d for _, _, d in self.seen(response)], ["a"])
        answer.callback([b"e", b"10-8", 0, [_entry("10-7", "b"), _entry("10-8", "c")]])
        self.push("news", "e-10-9", "d")
        self.assertEqual(
            [(i, d) for _, i, d in self.seen(response)],
            [("e-10-6", "a"), ("e-10-7", "b"), ("e-10-8", "c"), ("e-10-9", "d")],
        )
        self.assertEqual(self.hub.stats().gaps, 1)
        self.assertEqual(self.take(), [])

    def test_hole_during_the_catch_up_asks_again(self) -> None:
        """Another message lost while the catch-up runs: asked again, same place."""
        self.connect()
        response = self.subscribe()
        self.push("news", "e-10-7", "b")  # 10-6 lost
        ((_, answer),) = self.take()
        self.push("news", "e-10-9", "d")  # 10-8 lost too, after the replay ran
        answer.callback([b"e", b"10-7", 0, [_entry("10-6", "a"), _entry("10-7", "b")]])
        ((args, again),) = self.take()
        self.assertEqual(args[-2:], ("10-5", "1"))
        self.assertEqual(self.seen(response), [])
        again.callback(
            [
                b"e",
                b"10-9",
                0,
                [
                    _entry(f"10-{n}", c)
                    for n, c in zip(range(6, 10), "abcd", strict=True)
                ],
            ]
        )
        self.assertEqual([d for _, _, d in self.seen(response)], ["a", "b", "c", "d"])
        self.assertEqual(self.hub.stats().gaps, 2)

    def test_repeated_message_dropped(self) -> None:
        self.connect()
        response = self.subscribe()
        self.push("news", "e-10-6", "a")
        self.push("news", "e-10-6", "a")
        self.assertEqual(len(self.seen(response)), 1)
        self.assertIn("already seen", self.log_text())

    def test_new_epoch_from_its_first_event(self) -> None:
        """Redis lost its data; the new epoch's first event misses nothing."""
        self.connect()
        response = self.subscribe()
        self.push("news", "f-20-1", "x")
        self.push("news", "f-20-2", "y")
        self.assertEqual([d for _, _, d in self.seen(response)], ["x", "y"])
        self.assertEqual(self.take(), [])

    def test_new_epoch_joined_late(self) -> None:
        """The new epoch's first events missed: caught up, after a reset."""
        self.connect()
        response = self.subscribe()
        self.push("news", "f-20-3", "z")
        ((args, answer),) = self.take()
        self.assertEqual(args[-6:], ("e", "100000", "5", "after", "10-5", "1"))
        answer.callback(
            [
                b"f",
                b"20-3",
                1,
                [_entry("20-1", "x"), _entry("20-2", "y"), _entry("20-3", "z")],
            ]
        )
        events = self.seen(response)
        self.assertEqual([e for e, _, _ in events], ["reset", None, None, None])
        self.assertEqual([d for _, _, d in events[1:]], ["x", "y", "z"])

"""
The hub core (`oxian_tw.hub._core.Hub`) over a scripted backend, on a
``Clock``: the test decides when a follow or a read answers and which live
events arrive, lost, late or out of order, so each rule of SPEC §11.1 is
checked without a server: stitching a feed to its head, holes and epochs
caught up from history, one reset when history cannot help, reconnection,
reads that fail, and lag.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from oxian_tw.hub import IBackend
from oxian_tw.hub._core import Hub, Range, SubState
from oxian_tw.hub._ids import Position
from oxian_tw.hub._memory import MemoryBackend

from .redis_hub import Collector

EPOCH = "aaaaaaaaaa"
OTHER = "bbbbbbbbbb"


@implementer(IBackend)
class Scripted:
    """A backend whose answers the test gives (`answer_follow`, `answer_read`)."""

    description = "scripted"
    received = 0

    def __init__(self) -> None:
        self.sink: Any = None
        self.follows: dict[str, Deferred[None]] = {}
        self.reads: list[tuple[str, str, Any, int, Deferred[Range]]] = []
        #: Each read's ``last`` (the body the core delivered at ``after``).
        self.lasts: list[bytes | None] = []
        self.unfollowed: list[str] = []

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def append(self, channel: str, body: bytes, key: str | None) -> Deferred[Any]:
        raise NotImplementedError

    def read(
        self,
        channel: str,
        mode: str,
        after: Any = None,
        count: int = 0,
        last: bytes | None = None,
    ) -> Deferred[Range]:
        d: Deferred[Range] = Deferred()
        self.reads.append((channel, mode, after, count, d))
        self.lasts.append(last)
        return d

    def follow(self, channel: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.follows[channel] = d
        return d

    def unfollow(self, channel: str) -> None:
        self.unfollowed.append(channel)

    def announce(self, channel: str, wire: bytes) -> Deferred[None]:
        return succeed(None)

    def lease(self, channel: str, entries: Any, ttl: float) -> Deferred[None]:
        return succeed(None)

    def release(self, channel: str, presence_id: str, leave: bytes) -> Deferred[None]:
        return succeed(None)

    def present(self, channel: str) -> Deferred[dict[str, str]]:
        return succeed({})

    def present_count(self, channel: str) -> Deferred[int]:
        return succeed(0)

    def fetch(self, channel: str, name: str) -> Deferred[str | None]:
        return succeed(None)

    def claim(
        self, channel: str, name: str, value: str, ttl: float
    ) -> Deferred[str | None]:
        return succeed(None)

    def swap(
        self, channel: str, name: str, expected: str, value: str, ttl: float
    ) -> Deferred[bool]:
        return succeed(False)

    # The test's side.

    def answer_follow(self, channel: str) -> None:
        self.follows.pop(channel).callback(None)

    def answer_read(self, result: Range) -> tuple[str, str, Any, int]:
        channel, mode, after, count, d = self.reads.pop(0)
        d.callback(result)
        return channel, mode, after, count

    def fail_read(self) -> None:
        self.reads.pop(0)[-1].errback(RuntimeError("refused"))

    def live(self, channel: str, n: int, epoch: str = EPOCH) -> None:
        self.sink.event(channel, Position(epoch, n), body(n))


def body(n: int) -> bytes:
    return b"data: %d\n\n" % n


def events(*numbers: int) -> list[tuple[int, bytes]]:
    return [(n, body(n)) for n in numbers]


class CoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = Scripted()
        self.hub = Hub(self.backend, lambda: self.clock, history=100)

    def stream(self, *channels: str, last: str | None = None, **kw: Any) -> Collector:
        stream = Collector()
        self.hub.subscribe(stream, channels, last, **kw)  # type: ignore[arg-type]
        return stream

    def data(self, stream: Collector) -> list[Any]:
        return [e.data if e.event is None else e.event for e in stream.events]

    def live_feed(self, channel: str, head: int, epoch: str = EPOCH) -> None:
        """Answer the feed's follow and its head read."""
        self.backend.answer_follow(channel)
        self.assertEqual(
            self.backend.answer_read(Range(Position(epoch, head)))[1], "head"
        )


class BackendInterfaceTests(SynchronousTestCase):
    def test_backends_provide_it(self) -> None:
        from oxian_tw.hub._address import parse_redis_url
        from oxian_tw.hub._redis import OneRedis, RedisBackend

        clock = Clock()
        self.assertTrue(verifyObject(IBackend, Scripted()))
        self.assertTrue(verifyObject(IBackend, MemoryBackend(lambda: clock)))
        one = OneRedis(parse_redis_url("redis://127.0.0.1:1/0"), lambda: clock)
        self.assertTrue(verifyObject(IBackend, RedisBackend(one, lambda: clock)))


class StitchingTests(CoreTestCase):
    def test_events_before_the_head_are_dropped(self) -> None:
        """
        Live events arriving between the follow and the head read are held;
        those the head already counts are dropped, the rest delivered.
        """
        stream = self.stream("news")
        self.backend.answer_follow("news")
        self.backend.live("news", 5)
        self.backend.live("news", 6)
        self.backend.answer_read(Range(Position(EPOCH, 5)))
        self.assertEqual(self.data(stream), ["6"])
        self.assertEqual(stream.ids(), [f"{EPOCH}-6"])

    def test_nothing_until_followed(self) -> None:
        stream = self.stream("news")
        self.backend.live("news", 1)  # before the follow: not ours yet
        self.assertEqual(stream.events, [])
        self.live_feed("news", 1)
        self.backend.live("news", 2)
        self.assertEqual(self.data(stream), ["2"])

    def test_last_stream_unfollows(self) -> None:
        stream = self.stream("news")
        self.live_feed("news", 0)
        stream.end()
        self.assertEqual(self.backend.unfollowed, ["news"])
        self.assertEqual(self.hub.stats().channels, 0)


class GapTests(CoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.first = self.stream("news")
        self.live_feed("news", 0)

    def test_hole_caught_up_from_history(self) -> None:
        """A lost push: the next event reveals it; history fills it first."""
        self.backend.live("news", 1)
        self.backend.live("news", 3)  # 2 was lost
        self.backend.live("news", 4)  # arrives during the catch-up
        self.assertEqual(self.data(self.first), ["1"])
        channel, mode, after, _ = self.backend.answer_read(
            Range(Position(EPOCH, 3), events=events(2, 3))
        )
        self.assertEqual((channel, mode, after), ("news", "since", Position(EPOCH, 1)))
        self.assertEqual(self.data(self.first), ["1", "2", "3", "4"])
        self.assertEqual(self.hub.stats().gaps, 1)

    def test_late_and_repeated_dropped(self) -> None:
        for n in (1, 2, 1, 2):
            self.backend.live("news", n)
        self.assertEqual(self.data(self.first), ["1", "2"])
        self.assertEqual(self.backend.reads, [])

    def test_history_gone_one_reset(self) -> None:
        """History cannot fill the hole: one reset per stream, then live."""
        second = self.stream("news")
        self.backend.live("news", 1)
        self.backend.live("news", 9)
        self.backend.answer_read(Range(Position(EPOCH, 9), reset=True))
        for stream in (self.first, second):
            self.assertEqual(self.data(stream)[-1:], ["reset"])
            self.assertEqual(self.data(stream).count("reset"), 1)
        self.backend.live("news", 10)
        self.assertEqual(self.data(self.first)[-1], "10")

    def test_new_epoch_one_reset_then_what_it_kept(self) -> None:
        """
        Redis lost the channel (restart, FLUSHDB): one reset, then what the
        new epoch kept, then live; never two resets.
        """
        self.backend.live("news", 1)
        self.backend.live("news", 2, OTHER)
        self.backend.live("news", 3, OTHER)
        self.backend.answer_read(
            Range(Position(OTHER, 2), reset=True, events=events(1, 2))
        )
        self.assertEqual(self.data(self.first), ["1", "reset", "1", "2", "3"])
        self.assertEqual(self.first.ids()[-1], f"{OTHER}-3")

    def test_reconnection_catches_up(self) -> None:
        """The backend reconnected: follow again, then read what followed."""
        self.backend.live("news", 1)
        self.backend.sink.lost()
        self.backend.answer_follow("news")
        _, mode, after, _ = self.backend.answer_read(
            Range(Position(EPOCH, 3), events=events(2, 3))
        )
        self.assertEqual((mode, after), ("since", Position(EPOCH, 1)))
        self.assertEqual(self.data(self.first), ["1", "2", "3"])

    def test_reconnection_checks_the_last_event(self) -> None:
        """
        The read after a reconnection carries the body of the last event
        delivered, so a backend that failed over can tell whether the event
        at that position is still the one delivered.
        """
        self.backend.live("news", 1)
        self.backend.live("news", 2)
        self.backend.sink.lost(["news"])
        self.backend.answer_follow("news")
        self.assertEqual(self.backend.lasts[-1], body(2))
        # Another epoch (the backend found the event changed): one reset,
        # then what came after the change; nothing to check until then.
        self.backend.answer_read(Range(Position(OTHER, 2), reset=True))
        self.assertEqual(self.data(self.first), ["1", "2", "reset"])
        self.backend.sink.lost()
        self.backend.answer_follow("news")
        self.assertIsNone(self.backend.lasts[-1])

    def test_stale_events_of_an_old_epoch_dropped(self) -> None:
        """
        Events of an epoch the channel no longer has, arriving before the
        read that found its new epoch, are dropped: not delivered, and not
        one more read each (they would never stop).
        """
        self.backend.live("news", 1)
        self.backend.sink.lost(["news"])
        self.backend.answer_follow("news")
        self.backend.live("news", 2)  # published before the epoch changed
        self.backend.answer_read(Range(Position(OTHER, 2), reset=True))
        self.assertEqual(self.backend.reads, [])
        self.backend.live("news", 3, OTHER)
        self.assertEqual(self.data(self.first), ["1", "reset", "3"])

    def test_lost_names_its_channels(self) -> None:
        """A Cluster's moved slot: only its channels are followed again."""
        self.stream("other")
        self.live_feed("other", 0)
        self.backend.live("news", 1)
        self.backend.sink.lost(["other", "gone"])
        self.assertEqual(list(self.backend.follows), ["other"])

    def test_failed_read_retried_later(self) -> None:
        self.backend.live("news", 1)
        self.backend.live("news", 3)
        self.backend.fail_read()
        self.assertEqual(self.backend.follows, {})
        self.clock.advance(1)
        self.backend.answer_follow("news")
        self.backend.answer_read(Range(Position(EPOCH, 3), events=events(2, 3)))
        self.assertEqual(self.data(self.first), ["1", "2", "3"])


class JoiningTests(CoreTestCase):
    def test_resume_while_live_events_come(self) -> None:
        """
        A stream resuming from 2 while 6 and 7 arrive live: 3..5 from its
        read, then 6 and 7, each once.
        """
        self.stream("news")
        self.live_feed("news", 5)
        stream = self.stream("news", last=f"{EPOCH}-2")
        self.backend.live("news", 6)
        self.backend.live("news", 7)
        self.backend.answer_read(Range(Position(EPOCH, 6), events=events(3, 4, 5, 6)))
        self.assertEqual(self.data(stream), ["3", "4", "5", "6", "7"])
        self.backend.live("news", 8)
        self.assertEqual(self.data(stream)[-1], "8")

    def test_two_channels_one_id(self) -> None:
        """Each event's id names both channels; resuming names both again."""
        stream = self.stream("b", "a")
        self.live_feed("a", 0)
        self.live_feed("b", 0, OTHER)
        self.backend.live("a", 1)
        self.backend.live("b", 1, OTHER)
        self.assertEqual(stream.ids(), [f"{EPOCH}-1.{OTHER}-0", f"{EPOCH}-1.{OTHER}-1"])
        again = self.stream("a", "b", last=stream.ids()[0])
        self.backend.answer_read(Range(Position(OTHER, 1), events=events(1)))
        self.assertEqual(self.data(again), ["1"])
        self.assertEqual(again.ids(), [f"{EPOCH}-1.{OTHER}-1"])
        self.assertEqual(self.hub._subs[again].state, SubState.LIVE)  # type: ignore[index]


class LagTests(SynchronousTestCase):
    """Lag with the memory backend: what fits goes, the rest from history."""

    def test_lag_and_catch_up(self) -> None:
        clock = Clock()
        hub = Hub(MemoryBackend(lambda: clock), lambda: clock, history=100)

        class Tight(Collector):
            room = 3

            def _offer(self, wire: bytes) -> bool:
                if self.room <= 0:
                    return False
                self.room -= 1
                return super()._offer(wire)

            def _when_drained(self, callback: Any) -> None:
                self.drained = callback

        stream = Tight()
        hub.subscribe(stream, ["news"])  # type: ignore[arg-type]
        for n in range(10):
            hub.publish("news", n)
        self.assertEqual([e.data for e in stream.events], ["0", "1", "2"])
        self.assertEqual(hub.stats().lagged, 1)
        stream.room = 100
        stream.drained()
        self.assertEqual([e.data for e in stream.events], [str(n) for n in range(10)])
        hub.publish("news", 10)
        self.assertEqual(stream.events[-1].data, "10")


class HeadHeldTests(SynchronousTestCase):
    """
    ``sse(channels=...)`` sends its response head once the channels are
    live in this process, so a client that saw the head gets every event
    published after it; at most `HEAD_HOLD` seconds.
    """

    def setUp(self) -> None:
        from oxian_tw import OxianApp
        from oxian_tw.testing import TestClient

        from .helpers import make_tree

        route = "def GET(data, ctx):\n    ctx.response.sse(channels=['news'])\n"
        root = make_tree(self.mktemp(), {"sub.py": route})
        self.clock = Clock()
        self.app = OxianApp(root, reactor=self.clock)
        self.backend = Scripted()
        self.app.hub = Hub(self.backend, lambda: self.clock, history=10)
        self.client = TestClient(self.app)

    def test_head_once_live(self) -> None:
        response = self.client.get("/sub")
        self.assertNoResult(response)
        self.backend.answer_follow("news")
        self.backend.answer_read(Range(Position(EPOCH, 3)))
        self.client.flush()
        got = self.successResultOf(response)
        self.assertEqual(got.code, 200)
        self.backend.live("news", 4)
        self.client.flush()
        self.assertEqual(got.events()[0].data, "4")

    def test_head_at_the_latest_after_the_hold(self) -> None:
        from oxian_tw._sse_response import HEAD_HOLD

        response = self.client.get("/sub")
        self.clock.advance(HEAD_HOLD - 0.1)
        self.client.flush()
        self.assertNoResult(response)
        self.clock.advance(0.1)
        self.client.flush()
        self.assertEqual(self.successResultOf(response).code, 200)


class UnsubscribeTests(SynchronousTestCase):
    """`Hub.unsubscribe`: one channel left, the others kept (SPEC §16 revoked)."""

    def test_leaves_one_channel(self) -> None:
        from oxian_tw.hub import MemoryHub

        from .redis_hub import Collector

        clock = Clock()
        hub = MemoryHub(lambda: clock)
        stream, other = Collector(), Collector()
        hub.subscribe(stream, ["a", "b"], presence={"u": 1}, presence_events=True)
        hub.subscribe(other, ["b"])
        self.assertEqual(len(self.successResultOf(hub.presence("b"))), 1)
        self.assertTrue(hub.unsubscribe(stream, ["b"]))
        self.assertEqual(self.successResultOf(hub.presence("b")), {})
        self.assertEqual(len(self.successResultOf(hub.presence("a"))), 1)
        self.assertEqual([e.event for e in other.events], ["leave"])
        before = len(stream.events)
        published_b = self.successResultOf(hub.publish("b", "gone"))
        published_a = self.successResultOf(hub.publish("a", "kept"))
        clock.advance(0)
        self.assertEqual([e.data for e in stream.events[before:]], ["kept"])
        # Its ids now name its one channel: exactly publish's.
        self.assertEqual(stream.events[-1].id, published_a)
        self.assertEqual(other.events[-1].id, published_b)
        self.assertEqual(hub.stats().subscribers, 2)

    def test_not_while_joining(self) -> None:
        from oxian_tw.hub import MemoryHub

        from .redis_hub import Collector

        hub = MemoryHub(lambda: Clock())
        self.assertFalse(hub.unsubscribe(Collector(), ["a"]))

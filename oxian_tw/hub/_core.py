# -*- test-case-name: tests.test_hub,tests.test_hub_core -*-
"""
The hub (SPEC §11, §11.1), written once over a backend (`IBackend`:
memory, Redis, Redis Cluster).

**Feeds.** This process follows a channel while one of its streams is
subscribed to it (`_Feed`): the backend is asked to follow it, then for
its head (where the channel is); live events that arrive meanwhile wait,
and those the head already counts are dropped. From then on each live
event must be the next of its channel (``n`` one more, same epoch): a hole
or another epoch (a lost push, a reconnection, a history Redis lost) makes
the feed read what followed its last event from history before anything
newer, or send ``reset`` when history no longer has it. The last stream
leaving a channel unfollows it.

**Groups.** Live streams with the same set of channels form a group
(`_Group`): an event is encoded once per group, with the id naming each
channel's position (`oxian_tw.hub._ids`), so the common case — many
subscribers of one channel — encodes an event once.

**Catching up.** A new subscription, or a stream that fell behind, is
caught up before it joins a group (`_Sub`): each of its channels is read
from history as it asks (after its ``Last-Event-ID``, the earliest kept,
the last ``history`` events, or nothing), while the live events of those
channels wait for it; then come the replay, the waiting live events it did
not get from the replay, and the group.

**Lag.** A stream whose events would pass its byte budget (``"lag"``, the
default for hub events: SPEC §5.5) stops taking live events; once its
socket has drained it is caught up from history from the last event it
took, or gets ``reset`` when history no longer has it. Memory stays within
the budget; nothing is dropped in silence.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._config import HUB_PRESENCE_TTL
from ..sse import encode_fields
from ._channels import (
    EARLIEST,
    HubStats,
    Locals,
    Presence,
    check_channel,
    check_idempotency_key,
    decode_presence,
    reset_wire,
)
from ._ids import MAX_STREAM_CHANNELS, Position, compose, parse, resume_point
from ._interface import IBackend, IFeedSink, IHub, ISubscriber

__all__ = ("Hub", "Range")

#: Seconds before a channel whose read failed is followed again.
RETRY_READ = 1.0


@attrs.frozen
class Range:
    """A backend's answer to a read (`IBackend.read`)."""

    #: The channel's newest position when it was read.
    head: Position
    #: The position asked for cannot be resumed (another epoch, evicted).
    reset: bool = False
    #: ``(n, body)`` in order, all in ``head``'s epoch.
    events: list[tuple[int, bytes]] = attrs.Factory(list)


class FeedState(enum.Enum):
    """Where this process is in following a channel."""

    FOLLOWING = "asking the backend to follow it"
    READING = "reading where it is (its head, or what it missed)"
    LIVE = "delivering its live events"


_FEED_TRANSITIONS = {
    FeedState.FOLLOWING: {FeedState.READING},
    FeedState.READING: {FeedState.LIVE, FeedState.FOLLOWING},
    FeedState.LIVE: {FeedState.READING, FeedState.FOLLOWING},
}


class _Feed:
    """This process following one channel."""

    __slots__ = (
        "channel",
        "state",
        "head",
        "last",
        "held",
        "groups",
        "joining",
        "generation",
    )

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.state = FeedState.FOLLOWING
        #: The last event delivered (``None``: not known yet).
        self.head: Position | None = None
        #: Its body, when this process delivered it (checked after a
        #: reconnection: a failover may have put another event there).
        self.last: bytes | None = None
        #: Live events that arrived while it was not LIVE.
        self.held: list[tuple[Position, bytes]] = []
        #: The groups whose channel set has this channel.
        self.groups: dict[tuple[str, ...], _Group] = {}
        #: Streams catching up on this channel (they get its live events
        #: held for them).
        self.joining: dict[_Sub, None] = {}
        #: Bumped on every (re)follow: answers to an older one are ignored.
        self.generation = 0

    def move(self, state: FeedState) -> None:
        if state not in _FEED_TRANSITIONS[self.state]:
            raise ValueError(f"a feed cannot go from {self.state} to {state}")
        self.state = state


class _Group:
    """Live streams with the same channels: each event encoded once for all."""

    __slots__ = ("key", "members")

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key
        self.members: dict[ISubscriber, _Sub] = {}


class SubState(enum.Enum):
    """Where a subscribed stream is."""

    JOINING = "catching up before it joins its group"
    LIVE = "in its group"
    LAGGING = "over its budget, waiting for its socket to drain"


# How a channel of a joining stream starts.
_LIVE = ("live",)


class _Sub:
    """A stream subscribed to channels through the hub."""

    __slots__ = (
        "stream",
        "state",
        "positions",
        "starts",
        "reads",
        "replays",
        "resets",
        "held",
        "group",
        "waiting",
    )

    def __init__(self, stream: ISubscriber) -> None:
        self.stream = stream
        self.state = SubState.JOINING
        #: Its position per channel while it is not LIVE (in a group, the
        #: feeds' heads are its positions).
        self.positions: dict[str, Position] = {}
        #: channel -> how it starts, until planned.
        self.starts: dict[str, tuple[Any, ...]] = {}
        #: Reads under way for it.
        self.reads = 0
        #: channel -> events read for it, waiting to be sent.
        self.replays: dict[str, list[tuple[int, bytes]]] = {}
        #: channel -> the id a reset names.
        self.resets: dict[str, str] = {}
        #: Live events of its channels meanwhile: (channel, position or
        #: None for a reset of the feed, body).
        self.held: list[tuple[str, Position | None, bytes]] = []
        self.group: _Group | None = None
        #: Fired once it is LIVE (or gone): `Hub.subscribe`'s answers.
        self.waiting: list[Deferred[None]] | None = None

    def joined(self) -> None:
        waiting, self.waiting = self.waiting, None
        for d in waiting or ():
            d.callback(None)


@implementer(IFeedSink)
class _Sink:
    """What a backend calls: the hub's feed side, kept off its public API."""

    __slots__ = ("_hub",)

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def event(self, channel: str, position: Position, body: bytes) -> None:
        self._hub._event(channel, position, body)

    def announced(self, channel: str, wire: bytes) -> None:
        self._hub._announced(channel, wire)

    def lost(self, channels: Iterable[str] | None = None) -> None:
        self._hub._lost(channels)


@implementer(IHub)
class Hub:
    """
    The hub of an app (``ctx.hub``, ``app.hub``) over ``backend``.

    :param clock: returns the ``IReactorTime`` (resolved late).
    :param history: events each channel keeps (the most a joining stream
        holds of live events meanwhile).
    :param presence_ttl: seconds a presence lasts unless renewed (every
        third of it).
    """

    _log = Logger()

    def __init__(
        self,
        backend: IBackend,
        clock: Callable[[], Any],
        *,
        history: int,
        presence_ttl: float = HUB_PRESENCE_TTL,
    ) -> None:
        self._backend = backend
        backend.sink = _Sink(self)
        self._clock = clock
        self._held_limit = max(history, 1)
        self._presence_ttl = presence_ttl
        self._stats = HubStats()
        self._locals = Locals(self._stats, self._ended)
        self._feeds: dict[str, _Feed] = {}
        self._subs: dict[ISubscriber, _Sub] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._renewal: IDelayedCall | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {self._backend.description}>"

    @property
    def backend(self) -> IBackend:
        """Where its channels live (records beside them: `oxian_tw._runs`)."""
        return self._backend

    # IHub.

    def publish(
        self,
        channel: str,
        data: Any,
        event: str | None = None,
        idempotency_key: str | None = None,
    ) -> Deferred[str]:
        """
        Publish on ``channel``: a Deferred of the event's id (the channel's
        position, ``<epoch>-<n>``), or of the first publish's id for an
        ``idempotency_key`` already used on the channel within 5 minutes.
        """
        try:
            check_channel(channel)
            if idempotency_key is not None:
                check_idempotency_key(idempotency_key)
            # The id line is the hub's to add (first, SPEC §5.2).
            body = encode_fields(data, event)
        except (TypeError, ValueError):
            return fail()
        appended: Deferred[tuple[Position, bool]] = self._backend.append(
            channel, body, idempotency_key
        )
        return appended.addCallback(self._published)

    def subscribe(
        self,
        stream: ISubscriber,
        channels: Iterable[str],
        last_event_id: str | None = None,
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
    ) -> Deferred[None]:
        """
        Deliver ``channels`` to ``stream`` until it ends: first what
        ``last_event_id`` says it missed (or a ``reset`` per channel it
        cannot resume), or without one the last ``history`` events of each,
        then every live event. Fires once the stream takes the channels'
        live events (at once in memory; after a round trip with Redis).

        :raises ValueError: past `MAX_STREAM_CHANNELS` channels, or for a
            bad name, history or presence info.
        """
        names = list(dict.fromkeys(channels)) if not isinstance(channels, str) else None
        if names is not None:
            known = set(self._locals.channels_of(stream))
            if len(known | set(names)) > MAX_STREAM_CHANNELS:
                raise ValueError(
                    f"a stream follows at most {MAX_STREAM_CHANNELS} channels"
                )
        new, mine = self._locals.admit(
            stream, channels, history, presence, presence_events
        )
        if not new:
            return succeed(None)
        if last_event_id is None:
            start: tuple[Any, ...] = ("tail", history) if history else _LIVE
        elif last_event_id == EARLIEST:
            start = ("earliest",)
        else:
            start = ("resume", parse(last_event_id), last_event_id)
        sub = self._subs.get(stream)
        if sub is None:
            sub = self._subs[stream] = _Sub(stream)
        elif sub.state is SubState.LIVE:
            # Caught up on its channels so far: it waits for the new ones.
            self._leave_group(sub)
            sub.state = SubState.JOINING
            for name in self._locals.channels_of(stream):
                if name not in new:
                    head = self._feeds[name].head
                    assert head is not None
                    sub.positions[name] = head
        for channel in new:
            sub.starts[channel] = start
            feed = self._feed(channel)
            feed.joining[sub] = None
        if mine is not None:
            self._lease(new, [mine])
        joined: Deferred[None] = Deferred()
        if sub.waiting is None:
            sub.waiting = []
        sub.waiting.append(joined)
        self._advance(sub)
        return joined

    def unsubscribe(self, stream: ISubscriber, channels: Iterable[str]) -> bool:
        """
        Stop delivering ``channels`` to ``stream`` (it keeps its other
        channels; its presence on them ends, with ``leave`` events). Only
        for a stream taking live events: ``False`` (nothing done) while it
        is still joining or catching up.
        """
        sub = self._subs.get(stream)
        if sub is None or sub.state is not SubState.LIVE:
            return False
        gone, presence, left = self._locals.remove(stream, channels)
        if not gone:
            return True
        self._leave_group(sub)
        remaining = self._locals.channels_of(stream)
        if remaining:
            self._join_group(sub, tuple(sorted(remaining)))
        self._unfollow_unused(gone)
        if presence is not None:
            self._release(presence, left)
        return True

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """``{subscriber id: info}`` of every process on ``channel``."""
        try:
            check_channel(channel)
        except (TypeError, ValueError):
            return fail()
        present: Deferred[dict[str, str]] = self._backend.present(channel)
        return present.addCallback(decode_presence)

    def presence_count(self, channel: str) -> Deferred[int]:
        """How many are present on ``channel``, in every process."""
        try:
            check_channel(channel)
        except (TypeError, ValueError):
            return fail()
        counted: Deferred[int] = self._backend.present_count(channel)
        return counted

    def stats(self) -> HubStats:
        """A snapshot of this process's counters (``channels``: followed here)."""
        return attrs.evolve(
            self._stats, channels=len(self._feeds), received=self._backend.received
        )

    def start(self) -> None:
        """Get the backend ready (publishing and subscribing do it too)."""
        self._backend.start()

    def stop(self) -> Deferred[None]:
        """Let go of the backend; a later publish or subscribe starts it again."""
        renewal, self._renewal = self._renewal, None
        if renewal is not None and renewal.active():
            renewal.cancel()
        stopped: Deferred[None] = self._backend.stop()
        return stopped

    # What the backend tells (`IFeedSink`, through `_Sink`).

    def _event(self, channel: str, position: Position, body: bytes) -> None:
        feed = self._feeds.get(channel)
        if feed is None:
            return
        if feed.state is not FeedState.LIVE:
            feed.held.append((position, body))
            return
        head = feed.head
        assert head is not None
        if position.epoch == head.epoch:
            if position.n == head.n + 1:
                self._live(feed, position, body)
                return
            if position.n <= head.n:
                # Late or repeated: delivered already.
                return
        # A hole, or another epoch: read what followed the last event.
        self._stats.gaps += 1
        feed.held.append((position, body))
        self._catch_up_feed(feed, f"missed events before {position}")

    def _announced(self, channel: str, wire: bytes) -> None:
        feed = self._feeds.get(channel)
        if feed is None:
            return
        for group in list(feed.groups.values()):
            self._fan_out(group, wire, None)
        for sub in feed.joining:
            sub.held.append((channel, None, wire))

    def _lost(self, channels: Iterable[str] | None) -> None:
        """The backend reconnected: follow the channels again, catching up."""
        feeds = self._feeds
        for name in list(feeds) if channels is None else channels:
            feed = feeds.get(name)
            if feed is None:
                continue
            if feed.state is not FeedState.FOLLOWING:
                feed.move(FeedState.FOLLOWING)
            self._follow(feed)
        # Presence may have been lost with the connection.
        self._renew()

    # Feeds.

    def _feed(self, channel: str) -> _Feed:
        feed = self._feeds.get(channel)
        if feed is None:
            feed = self._feeds[channel] = _Feed(channel)
            self._follow(feed)
        return feed

    def _follow(self, feed: _Feed) -> None:
        feed.generation += 1
        generation = feed.generation
        followed: Deferred[Any] = self._backend.follow(feed.channel)
        followed.addCallbacks(
            self._followed,
            self._not_followed,
            callbackArgs=(feed, generation),
            errbackArgs=(feed, generation),
        )

    def _followed(self, _: Any, feed: _Feed, generation: int) -> None:
        if feed.generation != generation or self._feeds.get(feed.channel) is not feed:
            return
        feed.move(FeedState.READING)
        if feed.head is None:
            read: Deferred[Range] = self._backend.read(feed.channel, "head")
        else:
            # Followed again (reconnected): what was missed meanwhile.
            read = self._backend.read(feed.channel, "since", feed.head, last=feed.last)
        read.addCallbacks(
            self._feed_read,
            self._feed_not_read,
            callbackArgs=(feed, generation),
            errbackArgs=(feed, generation),
        )

    def _not_followed(self, failure: Failure, feed: _Feed, generation: int) -> None:
        # The backend follows it again when it is back (`lost`).
        self._log.info(
            "hub: following {channel} waits for {backend} ({why})",
            channel=feed.channel,
            backend=self._backend.description,
            why=failure.value,
        )

    def _catch_up_feed(self, feed: _Feed, why: str) -> None:
        if feed.state is not FeedState.LIVE:
            return
        feed.move(FeedState.READING)
        self._log.info(
            "hub: {channel}: {why}; catching up from {head}",
            channel=feed.channel,
            why=why,
            head=str(feed.head),
        )
        generation = feed.generation
        read: Deferred[Range] = self._backend.read(
            feed.channel, "since", feed.head, last=feed.last
        )
        read.addCallbacks(
            self._feed_read,
            self._feed_not_read,
            callbackArgs=(feed, generation),
            errbackArgs=(feed, generation),
        )

    def _feed_read(self, result: Range, feed: _Feed, generation: int) -> None:
        if feed.generation != generation or self._feeds.get(feed.channel) is not feed:
            return
        if feed.head is None:
            feed.head = result.head
        else:
            if result.reset:
                # Its members missed what cannot be brought back: one reset
                # each. On a new epoch, what it kept follows (the feed was
                # live up to its head: nothing else can be missing).
                self._reset_feed(feed, Position(result.head.epoch, 0))
            for n, body in result.events:
                if n > feed.head.n:
                    self._live(feed, Position(result.head.epoch, n), body)
            if feed.head != result.head:
                # Its last event was not delivered here: nothing to check.
                feed.last = None
            feed.head = result.head
        feed.move(FeedState.LIVE)
        # Streams waiting for the feed start from where the read found it:
        # what arrived meanwhile (held) comes after, to them too.
        for sub in list(feed.joining):
            self._advance(sub)
        held, feed.held = feed.held, []
        epoch = result.head.epoch
        for position, body in held:
            if position.epoch != epoch:
                # Arrived before the read's answer (one connection, in
                # order), so published before it, on an epoch the channel
                # no longer has: the read knew better.
                continue
            if feed.state is FeedState.LIVE:
                self._event(feed.channel, position, body)
            else:
                # A new catch-up began: the rest waits for it.
                feed.held.append((position, body))

    def _feed_not_read(self, failure: Failure, feed: _Feed, generation: int) -> None:
        if feed.generation != generation:
            return
        self._log.info(
            "hub: reading {channel} failed ({why}); followed again in {delay} s",
            channel=feed.channel,
            why=failure.value,
            delay=RETRY_READ,
        )
        feed.move(FeedState.FOLLOWING)
        feed.generation += 1
        self._clock().callLater(RETRY_READ, self._refollow, feed, feed.generation)

    def _refollow(self, feed: _Feed, generation: int) -> None:
        if feed.generation == generation and self._feeds.get(feed.channel) is feed:
            self._follow(feed)

    def _reset_feed(self, feed: _Feed, head: Position) -> None:
        before = str(feed.head)
        wire = reset_wire(feed.channel, before)
        for group in list(feed.groups.values()):
            self._stats.resets += len(group.members)
            self._fan_out(group, wire, None)
        for sub in feed.joining:
            sub.held.append((feed.channel, None, wire))
        feed.head = head
        feed.last = None

    def _live(self, feed: _Feed, position: Position, body: bytes) -> None:
        """The channel's next event: to its groups, and its joining streams."""
        feed.head = position
        feed.last = body
        for group in list(feed.groups.values()):
            self._fan_out(group, self._wire(group.key, body), feed.channel)
        for sub in list(feed.joining):
            held = sub.held
            if len(held) < self._held_limit:
                held.append((feed.channel, position, body))
            else:
                self._log.warn(
                    "hub: {request_id}'s catch-up took too long, {count} live "
                    "events waiting; disconnected, to resume from its last id",
                    request_id=sub.stream.request_id,
                    count=len(held),
                )
                sub.stream._cut("too_slow")

    def _wire(self, key: tuple[str, ...], body: bytes) -> bytes:
        feeds = self._feeds
        ident = compose(feeds[name].head for name in key)  # type: ignore[misc]
        return b"id: " + ident.encode("ascii") + b"\n" + body

    def _fan_out(self, group: _Group, wire: bytes, channel: str | None) -> None:
        """
        ``wire`` to every member; ``channel``: the one whose event it is
        (a member that cannot take it lags from before it).
        """
        refused = 0
        # A snapshot: a delivery may end a stream, or make it lag. The
        # loop is the hub's hot path: one call per member.
        members = list(group.members)
        for stream in members:
            if not stream._offer(wire):
                refused += 1
                self._refused(group.members.get(stream), channel)
        stats = self._stats
        stats.delivered += len(members) - refused
        stats.dropped += refused

    # Delivering to one stream.

    def _offer(self, sub: _Sub, wire: bytes, channel: str | None = None) -> bool:
        """Hand ``wire`` to one stream (see `_refused` when it does not take it)."""
        if sub.stream._offer(wire):
            return True
        self._refused(sub, channel)
        return False

    def _refused(self, sub: _Sub | None, channel: str | None) -> None:
        """
        A stream did not take an event: closed, cut by its policy
        ("disconnect"), or, under "lag", not cut: it lags (`_lag`).
        """
        if sub is None:
            return
        stream = sub.stream
        if stream.lags and not stream.closed:
            self._lag(sub, channel)

    def _lag(self, sub: _Sub, channel: str | None) -> None:
        """
        The stream fell behind: out of its group at its positions (the
        event of ``channel`` that did not fit is the first it will be sent
        again), until its socket has drained.
        """
        channels = self._locals.channels_of(sub.stream)
        if sub.state is SubState.LIVE:
            self._leave_group(sub)
            for name in channels:
                head = self._feeds[name].head
                assert head is not None
                if name == channel:
                    head = Position(head.epoch, head.n - 1)
                sub.positions[name] = head
        sub.state = SubState.LAGGING
        # (Its head, if it still waits, goes out: it will be caught up.)
        sub.joined()
        # Whatever waited for it is read again from history.
        sub.held.clear()
        sub.replays.clear()
        for name in channels:
            self._feeds[name].joining.pop(sub, None)
        self._stats.lagged += 1
        sub.stream._when_drained(lambda: self._drained(sub))

    def _drained(self, sub: _Sub) -> None:
        if self._subs.get(sub.stream) is not sub or sub.state is not SubState.LAGGING:
            return
        sub.state = SubState.JOINING
        for name in self._locals.channels_of(sub.stream):
            if name not in sub.starts:
                # (A channel subscribed while it lagged keeps its own start.)
                sub.starts[name] = ("from", sub.positions[name])
            self._feeds[name].joining[sub] = None
        self._advance(sub)

    # Catching a stream up.

    def _advance(self, sub: _Sub) -> None:
        """Plan the reads of the channels whose feeds are live; send when all came."""
        if sub.state is not SubState.JOINING or self._subs.get(sub.stream) is not sub:
            return
        for name in list(sub.starts):
            feed = self._feeds[name]
            if feed.state is not FeedState.LIVE:
                continue
            start = sub.starts.pop(name, None)
            if start is None:
                continue
            # A backend may answer a read at once (memory): the stream may
            # have joined, or lagged, before this returns.
            self._plan(sub, feed, start)
            if sub.state is not SubState.JOINING:
                return
        if not sub.starts and not sub.reads:
            self._join(sub)

    def _plan(self, sub: _Sub, feed: _Feed, start: tuple[Any, ...]) -> None:
        head = feed.head
        assert head is not None
        name = feed.channel
        kind = start[0]
        if kind == "live":
            sub.positions[name] = head
            return
        if kind == "resume":
            _, positions, last_event_id = start
            point = resume_point(positions, head.epoch)
            if point is None or point.n > head.n:
                sub.resets[name] = last_event_id
                sub.positions[name] = head
                return
            start = ("from", point)
        if start[0] == "from":
            point = start[1]
            if point.epoch != head.epoch or point.n > head.n:
                sub.resets[name] = str(point)
                sub.positions[name] = head
                return
            sub.positions[name] = point
            if point.n == head.n:
                return
            self._read(sub, name, "after", point, 0, str(point))
        elif kind == "tail":
            sub.positions[name] = Position(head.epoch, 0)
            self._read(sub, name, "tail", None, start[1], "")
        else:  # earliest
            sub.positions[name] = Position(head.epoch, 0)
            self._read(sub, name, "earliest", None, 0, EARLIEST)

    def _read(
        self,
        sub: _Sub,
        name: str,
        mode: str,
        after: Position | None,
        count: int,
        asked: str,
    ) -> None:
        sub.reads += 1
        read: Deferred[Range] = self._backend.read(name, mode, after, count)
        read.addCallbacks(
            self._sub_read,
            self._sub_not_read,
            callbackArgs=(sub, name, asked),
            errbackArgs=(sub, name, asked),
        )

    def _sub_read(self, result: Range, sub: _Sub, name: str, asked: str) -> None:
        sub.reads -= 1
        if self._subs.get(sub.stream) is not sub or sub.state is not SubState.JOINING:
            return
        if result.reset:
            sub.resets[name] = asked
            sub.positions[name] = result.head
        else:
            position = sub.positions[name]
            if position.epoch != result.head.epoch:
                sub.positions[name] = Position(result.head.epoch, 0)
            sub.replays[name] = result.events
        if not sub.starts and not sub.reads:
            self._join(sub)

    def _sub_not_read(self, failure: Failure, sub: _Sub, name: str, asked: str) -> None:
        # The backend refused or lost it: the stream learns it may have
        # missed events, instead of waiting.
        self._log.warn(
            "hub: reading {channel} for {request_id} failed ({why}); reset",
            channel=name,
            request_id=sub.stream.request_id,
            why=failure.value,
        )
        sub.reads -= 1
        if self._subs.get(sub.stream) is not sub or sub.state is not SubState.JOINING:
            return
        feed = self._feeds[name]
        sub.resets[name] = asked
        assert feed.head is not None
        sub.positions[name] = feed.head
        if not sub.starts and not sub.reads:
            self._join(sub)

    def _join(self, sub: _Sub) -> None:
        """Send what was read and what waited, then into the group."""
        if sub.state is not SubState.JOINING:
            return
        stream = sub.stream
        channels = self._locals.channels_of(stream)
        key = tuple(sorted(channels))
        positions = sub.positions
        stats = self._stats
        resets, sub.resets = sub.resets, {}
        replays, sub.replays = sub.replays, {}
        held, sub.held = sub.held, []
        for name in key:
            self._feeds[name].joining.pop(sub, None)
        for name, asked in resets.items():
            stats.resets += 1
            if not self._send(sub, reset_wire(name, asked)):
                return
        for name in key:
            for n, body in replays.get(name, ()):
                position = positions[name]
                if n <= position.n:
                    continue
                positions[name] = Position(position.epoch, n)
                if not self._send(sub, self._own_wire(key, positions, body)):
                    positions[name] = position
                    return
                stats.replayed += 1
        for name, live, body in held:
            if live is None:
                # A presence event, or the feed's own reset.
                if not self._send(sub, body):
                    return
                continue
            mine = positions[name]
            if live.epoch == mine.epoch and live.n <= mine.n:
                continue
            positions[name] = live
            if not self._send(sub, self._own_wire(key, positions, body)):
                positions[name] = mine
                return
            stats.delivered += 1
        if self._subs.get(stream) is not sub:
            # It ended while it was sent to.
            return
        for name in key:
            feed = self._feeds[name]
            if positions.get(name) != feed.head:
                # The feed moved on while this ran (a catch-up of its own):
                # the rest comes the same way.
                sub.starts[name] = ("from", positions[name])
                feed.joining[sub] = None
        if sub.starts:
            self._advance(sub)
            return
        sub.state = SubState.LIVE
        sub.positions = {}
        self._join_group(sub, key)
        sub.joined()

    def _own_wire(
        self, key: tuple[str, ...], positions: dict[str, Position], body: bytes
    ) -> bytes:
        ident = compose(positions[name] for name in key)
        return b"id: " + ident.encode("ascii") + b"\n" + body

    def _send(self, sub: _Sub, wire: bytes) -> bool:
        """One event to a joining stream; ``False`` when it stopped taking them."""
        if self._offer(sub, wire):
            return True
        if sub.state is not SubState.LAGGING:
            # Disconnected (or closed): nothing more for it.
            self._forget(sub)
        return False

    def _join_group(self, sub: _Sub, key: tuple[str, ...]) -> None:
        """Make ``sub`` a member of the group of the channels ``key``."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
            for name in key:
                self._feeds[name].groups[key] = group
        group.members[sub.stream] = sub
        sub.group = group

    def _leave_group(self, sub: _Sub) -> None:
        group = sub.group
        if group is None:
            return
        sub.group = None
        group.members.pop(sub.stream, None)
        if not group.members:
            del self._groups[group.key]
            for name in group.key:
                feed = self._feeds.get(name)
                if feed is not None:
                    feed.groups.pop(group.key, None)

    def _forget(self, sub: _Sub) -> None:
        sub.joined()
        self._leave_group(sub)
        for feed in self._feeds.values():
            feed.joining.pop(sub, None)
        sub.state = SubState.JOINING
        sub.starts.clear()

    def _ended(
        self, stream: ISubscriber, names: list[str], presence: Presence | None
    ) -> None:
        sub = self._subs.pop(stream, None)
        if sub is not None:
            self._forget(sub)
        self._unfollow_unused(names)
        if presence is not None:
            self._release(presence, presence.channels)

    def _unfollow_unused(self, names: Iterable[str]) -> None:
        """Stop following those of ``names`` no stream here has any more."""
        for name in names:
            if not self._locals.of(name):
                feed = self._feeds.pop(name, None)
                if feed is not None:
                    feed.generation += 1
                    self._backend.unfollow(name)

    def _release(self, presence: Presence, names: Iterable[str]) -> None:
        """End ``presence`` on ``names`` (their ``leave`` announced)."""
        for name in names:
            released: Deferred[Any] = self._backend.release(
                name, presence.id, presence.leave(name) or b""
            )
            released.addErrback(self._presence_failed, name)

    # Publishing.

    def _published(self, result: tuple[Position, bool]) -> str:
        position, earlier = result
        if earlier:
            self._stats.duplicates += 1
        else:
            self._stats.published += 1
        return str(position)

    # Presence.

    def _lease(self, channels: list[str], presences: list[Presence]) -> None:
        for name in channels:
            entries = [
                (p.id, p.info, p.join(name) or b"", p.leave(name) or b"")
                for p in presences
                if name in p.channels
            ]
            if entries:
                leased: Deferred[Any] = self._backend.lease(
                    name, entries, self._presence_ttl
                )
                leased.addErrback(self._presence_failed, name)
        self._schedule_renewal()

    def _renew(self) -> None:
        renewal, self._renewal = self._renewal, None
        if renewal is not None and renewal.active():
            renewal.cancel()
        by_channel: dict[str, list[Presence]] = {}
        for presence in self._locals.presences():
            for name in presence.channels:
                by_channel.setdefault(name, []).append(presence)
        for name, presences in by_channel.items():
            self._lease([name], presences)

    def _schedule_renewal(self) -> None:
        if self._renewal is None or not self._renewal.active():
            self._renewal = self._clock().callLater(self._presence_ttl / 3, self._renew)

    def _presence_failed(self, failure: Failure, channel: str) -> None:
        self._log.info(
            "hub: presence on {channel} not renewed ({why}); retried",
            channel=channel,
            why=failure.value,
        )

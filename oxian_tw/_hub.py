# -*- test-case-name: tests.test_hub -*-
"""
The hub (SPEC §11): named channels that SSE streams subscribe to, each event
encoded once per publish, a bounded history per channel, and exact resume
from ``Last-Event-ID``.

Ids come from one sequence per hub, so they increase strictly within every
channel and a single ``Last-Event-ID`` says where a stream subscribed to
several channels stopped in all of them. An id is ``"<epoch>-<n>"``: the
epoch (the hub's start time in ms, hex) makes an id from an earlier process
unknown rather than wrongly resumed.

This is the in-process backend: publish, replay and subscribe all run on the
reactor thread, so a replay and a racing publish can never interleave.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._text import is_decimal
from .sse import encode_fields

if TYPE_CHECKING:
    from ._eventstream import EventStream

#: The event a subscriber gets when its ``Last-Event-ID`` cannot be resumed.
RESET_EVENT = "reset"
_MAX_CHANNEL = 256


@attrs.frozen
class _Past:
    """One event of a channel's history."""

    seq: int
    wire: bytes
    time: float


class _Channel:
    """A channel: its history, its subscribers, how far it was evicted."""

    __slots__ = ("name", "history", "bytes", "evicted", "subscribers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.history: collections.deque[_Past] = collections.deque()
        self.bytes = 0
        #: The highest sequence number evicted from the history (0: none).
        self.evicted = 0
        self.subscribers: set[EventStream] = set()


@attrs.define
class HubStats:
    """Counters of a hub (``app.hub.stats()``)."""

    channels: int = 0
    subscribers: int = 0
    published: int = 0
    delivered: int = 0
    dropped: int = 0
    replayed: int = 0
    resets: int = 0


class Hub:
    """
    Named channels for SSE streams (``ctx.hub``, ``app.hub``).

    :param clock: returns the ``IReactorTime`` to run on (resolved late).
    :param history: events kept per channel.
    :param history_bytes: encoded bytes kept per channel.
    :param history_age: seconds an event stays in its channel's history.
    """

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        *,
        history: int = 1000,
        history_bytes: int = 1024 * 1024,
        history_age: float = 3600.0,
    ) -> None:
        self._clock = clock
        self._history = history
        self._history_bytes = history_bytes
        self._history_age = history_age
        self._channels: dict[str, _Channel] = {}
        # Each subscribed stream's channels, so that its end costs O(its own).
        self._subscribed: dict[EventStream, list[_Channel]] = {}
        self._seq = 0
        # The highest sequence number that may have been lost with a
        # forgotten channel: new channels start "evicted" up to it.
        self._floor = 0
        self._epoch: str | None = None
        self._sweep: IDelayedCall | None = None
        self._stats = HubStats()

    def publish(
        self, channel: str, data: Any, event: str | None = None
    ) -> Deferred[str]:
        """
        Publish an event on ``channel``: encoded once, kept in the channel's
        history, handed to every subscriber (each under its own slow-consumer
        policy, never waiting for any of them).

        :return: a Deferred firing with the event's id once it is stored and
            on its way; failing with ``ValueError``/``TypeError`` for a bad
            channel name, event name or data.
        """
        try:
            check_channel(channel)
            seq = self._seq + 1
            event_id = f"{self._epoch_text()}-{seq}"
            wire = encode_fields(data, event, event_id)
        except (TypeError, ValueError):
            return fail()
        self._seq = seq
        now = self._clock().seconds()
        target = self._channel(channel)
        target.history.append(_Past(seq, wire, now))
        target.bytes += len(wire)
        self._evict(target, now)
        self._schedule_sweep()
        self._stats.published += 1
        fan_out(target.subscribers, wire, self._stats)
        return succeed(event_id)

    def subscribe(
        self,
        stream: EventStream,
        channels: Iterable[str],
        last_event_id: str | None = None,
    ) -> None:
        """
        Deliver ``channels`` to ``stream``: first, given a ``last_event_id``,
        every event after it from the channels' history (in publication
        order), or one ``reset`` event per channel whose events after it are
        no longer all there; then every live event. Channels the stream
        already has are left as they are.
        """
        names = channel_names(channels)
        if stream.closed:
            return
        now = self._clock().seconds()
        targets = []
        for name in names:
            target = self._channel(name)
            self._evict(target, now)
            # A channel the stream already has was replayed then.
            if stream not in target.subscribers:
                targets.append(target)
        if last_event_id is not None:
            self._replay(stream, targets, last_event_id)
        own = self._subscribed.setdefault(stream, [])
        for target in targets:
            target.subscribers.add(stream)
            own.append(target)
            self._stats.subscribers += 1

    def unsubscribe(self, stream: EventStream) -> None:
        """Stop delivering to ``stream`` (its end does this)."""
        for target in self._subscribed.pop(stream, ()):
            target.subscribers.discard(stream)
            self._stats.subscribers -= 1
            self._forget_if_idle(target.name, target)

    def stats(self) -> HubStats:
        """A snapshot of the counters."""
        return attrs.evolve(self._stats, channels=len(self._channels))

    def start(self) -> None:
        """Nothing to connect to: the in-process hub is always ready."""

    def stop(self) -> Deferred[None]:
        """Stop the eviction timer; history stays (a restarted app keeps it)."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        return succeed(None)

    # Internals.

    def _channel(self, name: str) -> _Channel:
        target = self._channels.get(name)
        if target is None:
            target = self._channels[name] = _Channel(name)
            target.evicted = self._floor
        return target

    def _epoch_text(self) -> str:
        if self._epoch is None:
            self._epoch = f"{int(self._clock().seconds() * 1000):x}"
        return self._epoch

    def _position(self, last_event_id: str) -> int | None:
        """The sequence number an id of this hub names, else ``None``."""
        epoch, _, number = last_event_id.rpartition("-")
        if epoch != self._epoch_text() or not is_decimal(number) or len(number) > 18:
            return None
        seq = int(number)
        return seq if seq <= self._seq else None

    def _replay(
        self, stream: EventStream, targets: list[_Channel], last_event_id: str
    ) -> None:
        position = self._position(last_event_id)
        events: list[_Past] = []
        for target in targets:
            if position is None or target.evicted > position:
                self._stats.resets += 1
                stream._deliver(reset_wire(target.name, last_event_id))
                continue
            events.extend(p for p in target.history if p.seq > position)
        events.sort(key=lambda p: p.seq)
        for past in events:
            if not stream._deliver(past.wire):
                return
            self._stats.replayed += 1

    def _evict(self, target: _Channel, now: float) -> None:
        history = target.history
        oldest = now - self._history_age
        while history and (
            len(history) > self._history
            or target.bytes > self._history_bytes
            or history[0].time <= oldest
        ):
            past = history.popleft()
            target.bytes -= len(past.wire)
            target.evicted = past.seq

    def _forget_if_idle(self, name: str, target: _Channel) -> None:
        # Channels are forgotten once they hold neither history nor
        # subscribers, so per-user channels cannot pile up. What they had
        # evicted raises the floor: a client older than it gets a reset.
        if not target.subscribers and not target.history:
            self._floor = max(self._floor, target.evicted)
            del self._channels[name]

    def _schedule_sweep(self) -> None:
        """One timer evicts aged history of channels nobody publishes on."""
        if self._sweep is None or not self._sweep.active():
            self._sweep = self._clock().callLater(
                max(self._history_age / 10, 1.0), self._run_sweep
            )

    def _run_sweep(self) -> None:
        now = self._clock().seconds()
        for name, target in list(self._channels.items()):
            self._evict(target, now)
            self._forget_if_idle(name, target)
        if any(t.history for t in self._channels.values()):
            self._schedule_sweep()


def check_channel(name: Any) -> None:
    """
    :raises TypeError: for a channel name that is not a ``str``.
    :raises ValueError: for one that is empty, too long, or holds CR, LF
        or NUL.
    """
    if not isinstance(name, str):
        raise TypeError(f"a channel name is a str, not {type(name).__name__}")
    if (
        not 0 < len(name) <= _MAX_CHANNEL
        or "\r" in name
        or "\n" in name
        or ("\x00" in name)
    ):
        raise ValueError(
            f"a channel name has 1 to {_MAX_CHANNEL} characters and no CR, LF "
            f"or NUL: {name!r}"
        )


def channel_names(channels: Iterable[str]) -> list[str]:
    """``channels`` checked (`check_channel`), each once, in order."""
    names = list(dict.fromkeys(channels))
    for name in names:
        check_channel(name)
    return names


def reset_wire(channel: str, last_event_id: str) -> bytes:
    """The ``reset`` event telling a subscriber it missed events of ``channel``."""
    return encode_fields(
        {"channel": channel, "last_event_id": last_event_id}, RESET_EVENT
    )


def fan_out(subscribers: Iterable[EventStream], wire: bytes, stats: HubStats) -> None:
    """Hand ``wire`` to each subscriber, under its own slow-consumer policy."""
    # A snapshot: a delivery may end a stream, which unsubscribes it.
    targets = list(subscribers)
    delivered = 0
    for subscriber in targets:
        if subscriber._deliver(wire):
            delivered += 1
    stats.delivered += delivered
    stats.dropped += len(targets) - delivered

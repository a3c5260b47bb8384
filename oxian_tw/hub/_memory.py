# -*- test-case-name: tests.test_hub -*-
"""
The in-process hub (``--hub memory``, the default; SPEC §11): named
channels that SSE streams subscribe to, each event encoded once per
publish, a bounded history per channel, and exact resume from
``Last-Event-ID``.

Ids come from one sequence per hub, so they increase strictly within every
channel and a single ``Last-Event-ID`` says where a stream subscribed to
several channels stopped in all of them. An id is ``"<epoch>-<n>"``: the
epoch (the hub's start time in ms, hex) makes an id from an earlier process
unknown rather than wrongly resumed.

Publish, replay and subscribe all run on the reactor thread, so a replay
and a racing publish can never interleave, and no message can be missed:
this backend has no gaps to detect.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from .._config import (
    HUB_HISTORY,
    HUB_HISTORY_AGE,
    HUB_HISTORY_BYTES,
    HUB_PRESENCE_TTL,
)
from .._text import is_decimal
from ..sse import encode_fields
from ._channels import (
    EARLIEST,
    IDEMPOTENCY_WINDOW,
    HubStats,
    Locals,
    Presence,
    check_channel,
    check_idempotency_key,
    decode_presence,
    fan_out,
    reset_wire,
)
from ._interface import IHub, ISubscriber

#: The most idempotency keys remembered at once; past it the oldest are
#: forgotten before their window ends (logged).
MAX_IDEMPOTENCY_KEYS = 100_000


@attrs.frozen
class _Past:
    """One event of a channel's history."""

    seq: int
    wire: bytes
    time: float


class _Channel:
    """A channel: its history and how far it was evicted."""

    __slots__ = ("name", "history", "bytes", "evicted")

    def __init__(self, name: str) -> None:
        self.name = name
        self.history: collections.deque[_Past] = collections.deque()
        self.bytes = 0
        #: The highest sequence number evicted from the history (0: none).
        self.evicted = 0


@implementer(IHub)
class MemoryHub:
    """
    The in-process hub (``ctx.hub``, ``app.hub`` with ``--hub memory``).

    :param clock: returns the ``IReactorTime`` to run on (resolved late).
    :param history: events kept per channel.
    :param history_bytes: encoded bytes kept per channel.
    :param history_age: seconds an event stays in its channel's history.
    :param presence_ttl: unused here (a process's streams leave with it).
    """

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        *,
        history: int = HUB_HISTORY,
        history_bytes: int = HUB_HISTORY_BYTES,
        history_age: float = HUB_HISTORY_AGE,
        presence_ttl: float = HUB_PRESENCE_TTL,
    ) -> None:
        self._clock = clock
        self._history = history
        self._history_bytes = history_bytes
        self._history_age = history_age
        self._channels: dict[str, _Channel] = {}
        self._stats = HubStats()
        self._locals = Locals(self._stats, self._ended)
        self._seq = 0
        # The highest sequence number that may have been lost with a
        # forgotten channel: new channels start "evicted" up to it.
        self._floor = 0
        self._epoch: str | None = None
        self._sweep: IDelayedCall | None = None
        # (channel, key) -> (id, when it was first used), oldest first.
        self._keys: collections.OrderedDict[tuple[str, str], tuple[str, float]] = (
            collections.OrderedDict()
        )

    def publish(
        self,
        channel: str,
        data: Any,
        event: str | None = None,
        idempotency_key: str | None = None,
    ) -> Deferred[str]:
        """
        Publish an event on ``channel``: encoded once, kept in the channel's
        history, handed to every subscriber (each under its own slow-consumer
        policy, never waiting for any of them).

        :return: a Deferred firing with the event's id once it is stored and
            on its way (with the first publish's id for an
            ``idempotency_key`` seen on this channel in the last 5 minutes);
            failing with ``ValueError``/``TypeError`` for a bad channel
            name, event name, key or data.
        """
        try:
            check_channel(channel)
            if idempotency_key is not None:
                check_idempotency_key(idempotency_key)
            now = self._clock().seconds()
            if idempotency_key is not None:
                earlier = self._earlier(channel, idempotency_key, now)
                if earlier is not None:
                    self._stats.duplicates += 1
                    return succeed(earlier)
            seq = self._seq + 1
            event_id = f"{self._epoch_text()}-{seq}"
            wire = encode_fields(data, event, event_id)
        except (TypeError, ValueError):
            return fail()
        self._seq = seq
        if idempotency_key is not None:
            self._keys[channel, idempotency_key] = (event_id, now)
        target = self._channel(channel)
        target.history.append(_Past(seq, wire, now))
        target.bytes += len(wire)
        self._evict(target, now)
        self._schedule_sweep()
        self._stats.published += 1
        subscribers = self._locals.of(channel)
        if subscribers:
            fan_out(subscribers, wire, self._stats)
        return succeed(event_id)

    def subscribe(
        self,
        stream: ISubscriber,
        channels: Iterable[str],
        last_event_id: str | None = None,
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
    ) -> None:
        """
        Deliver ``channels`` to ``stream``: first, given a ``last_event_id``,
        every event after it from the channels' history (in publication
        order), or one ``reset`` event per channel whose events after it are
        no longer all there (``"earliest"``: everything kept); without one,
        the last ``history`` events of each channel; then every live event.
        Channels the stream already has are left as they are.

        :raises ValueError, TypeError: for a bad channel name, ``history``
            or ``presence`` info.
        """
        new, mine = self._locals.admit(
            stream, channels, history, presence, presence_events
        )
        now = self._clock().seconds()
        targets = []
        for name in new:
            target = self._channel(name)
            self._evict(target, now)
            targets.append(target)
        if last_event_id is not None:
            self._replay(stream, targets, last_event_id)
        elif history:
            self._deliver_all(
                stream, [p for t in targets for p in list(t.history)[-history:]]
            )
        if mine is not None:
            for name in new:
                self._announce(name, mine.join(name))

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """``{subscriber_id: info}`` of the streams present on ``channel``."""
        try:
            check_channel(channel)
        except (TypeError, ValueError):
            return fail()
        return succeed(decode_presence(self._locals.present(channel)))

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

    def _ended(
        self, stream: ISubscriber, names: list[str], presence: Presence | None
    ) -> None:
        for name in names:
            target = self._channels.get(name)
            if target is not None:
                self._forget_if_idle(name, target)
        if presence is not None:
            for name in presence.channels:
                self._announce(name, presence.leave(name))

    def _announce(self, channel: str, wire: bytes | None) -> None:
        if wire is not None:
            fan_out(self._locals.of(channel), wire, self._stats)

    def _earlier(self, channel: str, key: str, now: float) -> str | None:
        keys = self._keys
        horizon = now - IDEMPOTENCY_WINDOW
        while keys:
            oldest = next(iter(keys.values()))
            if oldest[1] > horizon and len(keys) < MAX_IDEMPOTENCY_KEYS:
                break
            keys.popitem(last=False)
        known = keys.get((channel, key))
        return None if known is None else known[0]

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
        self, stream: ISubscriber, targets: list[_Channel], last_event_id: str
    ) -> None:
        if last_event_id == EARLIEST:
            self._deliver_all(stream, [p for t in targets for p in t.history])
            return
        position = self._position(last_event_id)
        events: list[_Past] = []
        for target in targets:
            if position is None or target.evicted > position:
                self._stats.resets += 1
                stream._deliver(reset_wire(target.name, last_event_id))
                continue
            events.extend(p for p in target.history if p.seq > position)
        self._deliver_all(stream, events)

    def _deliver_all(self, stream: ISubscriber, events: list[_Past]) -> None:
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
        if not target.history and not self._locals.of(name):
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
